"""Sutton & Barto's 19-state random walk (Figures 12.6 and 12.8): TD(λ) error against α.

For each trace kind (accumulate, true online), each λ and each α on a grid, it runs 100
independent runs of 10 episodes from zero values, measures the RMS error over the 19 states at
the end of every episode, and averages over episodes and runs. All runs, λs and αs advance
together: one batch element per (λ, α, run), which is how :mod:`agents.traces` is meant to be
used; the walks come from the batched ``bpl/RandomWalk-v0`` env (the same walks for every λ, α).

    python examples/random_walk.py                      # writes docs/random_walk.png
    python examples/random_walk.py --runs 20 --out /tmp/walk.png

Expected (ALGORITHM.md §7): α = 0 gives √0.3 ≈ 0.548 everywhere; best RMS ≈ 0.345 for TD(0)
(α ≈ 0.8), ≈ 0.26 for accumulate λ = 0.8 (α ≈ 0.3), ≈ 0.25 for true online λ = 0.8 (α ≈ 0.4);
accumulate traces diverge for λ >= 0.9 at large α (off the plot, as in the book).
"""

import argparse
import pathlib
import time

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from agents import traces
from bpl_envs.random_walk import RandomWalkVectorEnv

LAMBDAS = [0.0, 0.4, 0.8, 0.9, 0.95, 0.975, 0.99, 1.0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="independent runs per (λ, α)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per run")
    parser.add_argument("--n-states", type=int, default=19, help="non-terminal states (odd)")
    parser.add_argument("--n-alphas", type=int, default=21, help="points of the α grid on [0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the walks")
    parser.add_argument("--out", default="docs/random_walk.png", help="where to save the plot")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args()


def record_walks(runs: int, episodes: int, n_states: int, seed: int):
    """Step ``runs`` walks until each has finished ``episodes`` episodes.

    Returns time-major tensors of shape (T, runs): the state left ``s``, the state entered
    ``s_next`` (the terminal one at an episode's end), the reward, whether the episode ended
    there, and ``active`` (the transition belongs to the run's first ``episodes`` episodes).
    """
    env = RandomWalkVectorEnv(runs, n_states=n_states, autoreset_mode=AutoresetMode.SAME_STEP)
    obs, _ = env.reset(seed=seed)
    finished = np.zeros(runs, dtype=np.int64)
    steps = []
    while (finished < episodes).any():
        next_obs, reward, terminated, _, info = env.step(np.zeros(runs, dtype=np.int64))
        s_next = next_obs.copy()
        for i in np.flatnonzero(terminated):
            s_next[i] = info["final_obs"][i]
        steps.append((obs, s_next, reward, terminated, finished < episodes))
        finished += terminated
        obs = next_obs
    columns = zip(*steps, strict=True)
    return [torch.as_tensor(np.stack(column)) for column in columns], env.true_values


def sweep(
    trace: str,
    lambdas: list[float],
    alphas: np.ndarray,
    runs: int = 100,
    episodes: int = 10,
    n_states: int = 19,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Mean RMS error over states, episodes and runs: array (len(lambdas), len(alphas)).

    ``trace``: ``"accumulate"`` or ``"true_online"``. Tabular values start at 0; γ = 1.
    """
    (s, s_next, reward, ended, active), true_values = record_walks(runs, episodes, n_states, seed)
    n_lambdas, n_alphas = len(lambdas), len(alphas)
    copies = n_lambdas * n_alphas  # batch element b = (i_lambda * n_alphas + i_alpha) * runs + run
    batch = copies * runs
    lam = torch.tensor(lambdas, dtype=torch.float64).repeat_interleave(n_alphas * runs)
    alpha = torch.tensor(alphas, dtype=torch.float64).repeat_interleave(runs).repeat(n_lambdas)
    one_hot = torch.eye(n_states + 2, dtype=torch.float64)
    true_values = torch.tensor(true_values[1:-1])
    rows = torch.arange(batch)

    w = torch.zeros(batch, n_states + 2, dtype=torch.float64)
    z = torch.zeros_like(w)
    v_old = torch.zeros(batch, dtype=torch.float64)
    starting = torch.ones(batch, dtype=torch.bool)
    rms_sum = torch.zeros(batch, dtype=torch.float64)
    for t in tqdm(range(s.shape[0]), desc=trace, disable=not progress, leave=False):
        s_t, s_next_t = s[t].repeat(copies), s_next[t].repeat(copies)
        done, learning = ended[t].repeat(copies), active[t].repeat(copies)
        x = one_hot[s_t]  # tabular features: V(s) = w·x(s) = w[s]
        v, v_next = w[rows, s_t], w[rows, s_next_t]
        delta = traces.td_error(reward[t].repeat(copies), v_next, v, (~done).double())
        step = alpha * learning  # runs past their first episodes stop learning
        trace_discount = lam * (~starting).double()  # γλ, and a fresh trace per episode
        if trace == "accumulate":
            z = traces.accumulating_trace(z, x, trace_discount)
            w = w + traces.trace_increment(step * delta, z)
        else:
            z = traces.dutch_trace(z, x, trace_discount, alpha)
            w = traces.true_online_td_update(w, z, x, delta, v, v_old, step)
            v_old = v_next * (~done).double()
        measured = (done & learning).nonzero().squeeze(1)  # episode ends: score the values
        rms_sum[measured] += ((w[measured, 1:-1] - true_values) ** 2).mean(1).sqrt()
        starting = done
    return (rms_sum / episodes).view(n_lambdas, n_alphas, runs).mean(2).numpy()


if __name__ == "__main__":
    args = parse_args()
    alphas = np.linspace(0.0, 1.0, args.n_alphas)
    start = time.perf_counter()
    results = {
        trace: sweep(trace, LAMBDAS, alphas, args.runs, args.episodes, args.n_states, args.seed,
                     progress=not args.no_progress)
        for trace in ("accumulate", "true_online")
    }
    print(f"{args.runs} runs x {args.episodes} episodes, {len(LAMBDAS)} λ x {len(alphas)} α, "
          f"{time.perf_counter() - start:.1f} s")
    for trace, rms in results.items():
        print(f"\n{trace:>11}:   λ    best α   best RMS   RMS at α=0")
        for lam, row in zip(LAMBDAS, rms, strict=True):
            best = np.nanargmin(np.where(np.isfinite(row), row, np.nan))
            print(f"{'':>13}{lam:<6} {alphas[best]:<8.2f} {row[best]:<10.4f} {row[0]:.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    titles = {"accumulate": "accumulate TD(λ)", "true_online": "true online TD(λ)"}
    colours = plt.cm.viridis(np.linspace(0, 0.95, len(LAMBDAS)))
    for ax, (trace, rms) in zip(axes, results.items(), strict=True):
        for lam, row, colour in zip(LAMBDAS, rms, colours, strict=True):
            ax.plot(alphas, np.where(np.isfinite(row), row, np.nan), color=colour, label=f"λ={lam}")
        ax.set(title=titles[trace], xlabel="α", ylim=(0.2, 0.55), xlim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"RMS error, first {args.episodes} episodes\n({args.runs} runs)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle(f"{args.n_states}-state random walk (Sutton & Barto, Figures 12.6 and 12.8)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.89, 1))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"\nsaved {out}")
