"""TD(λ) on Sutton & Barto's 19-state random walk: RMS error against α for each λ (§7).

For each trace kind (accumulate, true online), each λ and each α of a grid, ``runs`` independent
runs of ``episodes`` episodes from zero values; the RMS error over the states at the end of every
episode, averaged over episodes and runs. All runs, λs and αs advance together, one batch
element per (λ, α, run), which is how :mod:`agents.traces` is meant to be used; the walks come
from the batched ``bpl/RandomWalk-v0`` env (the same walks for every λ and α).

``bpl reproduce random-walk`` repeats the sweep for several seeds (disjoint sets of walks, see
:func:`walk_seed`) and writes:

- ``results.md``: per trace kind and λ, the best α (of the curve averaged over seeds), the RMS
  there and at α = 0, as mean ± std over seeds;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config``, ``alphas``,
  ``curves`` (trace -> λ -> mean RMS per α, null where diverged) and ``results`` (one row per
  trace kind and λ: ``trace``, ``lam``, ``best_alpha``, ``best_rms`` and ``rms_at_alpha_0``, each
  ``{"mean", "std", "values"}`` except ``best_alpha``);
- ``random_walk.png``: the book's figures (12.6 and 12.8).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from agents import traces
from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.parallel import run_cells
from bpl_envs.random_walk import RandomWalkVectorEnv

__all__ = [
    "check",
    "lambda_colours",
    "plot_rms_curves",
    "record_walks",
    "run",
    "sweep",
    "walk_seed",
]

TRACE_TITLES = {"accumulate": "accumulate TD(λ)", "true_online": "true online TD(λ)"}


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
    lambdas: Sequence[float],
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
    if trace not in TRACE_TITLES:
        raise ValueError(f"trace must be one of {sorted(TRACE_TITLES)}, got {trace!r}")
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


def plot_rms_curves(
    ax,
    alphas: np.ndarray,
    lambdas: Sequence[float],
    rms: np.ndarray,
    colours: Sequence[Any],
    ylim: tuple[float, float] = (0.2, 0.55),
) -> None:
    """Draw one RMS-vs-α curve per λ on ``ax`` (diverged points are left out, as in the book).

    Args:
        rms: (len(lambdas), len(alphas)).
        colours: one matplotlib colour per λ.
    """
    for lam, row, colour in zip(lambdas, rms, colours, strict=True):
        shown = np.where(np.isfinite(row) & (row < 10 * ylim[1]), row, np.nan)
        ax.plot(alphas, shown, color=colour, label=f"λ = {lam:g}")
    ax.set(xlabel="α", ylim=ylim, xlim=(alphas[0], alphas[-1]))
    ax.grid(alpha=0.3)


def lambda_colours(lambdas: Sequence[float]) -> list[Any]:
    """One colour per λ of a grid, evenly spaced along viridis in the grid's order (panels that
    share a λ grid share its colours)."""
    from matplotlib import colormaps

    count = len(lambdas)
    return [colormaps["viridis"](0.92 * i / max(1, count - 1)) for i in range(count)]


def walk_seed(seed: int, runs: int) -> int:
    """The seed of the walks of repetition ``seed``: run i of :func:`sweep` follows the walk
    seeded ``walk_seed + i``, so repetitions k = 0, 1, ... use the disjoint walk seeds
    k·runs .. (k+1)·runs − 1."""
    return seed * runs


def _best(row: np.ndarray) -> int:
    finite = np.where(np.isfinite(row), row, np.inf)
    return int(np.argmin(finite))


def check(config: dict[str, Any]) -> None:
    """Validate the preset's trace kinds before anything runs."""
    for trace in config["experiment"]["traces"]:
        if trace not in TRACE_TITLES:
            raise ValueError(f"traces must be among {sorted(TRACE_TITLES)}, got {trace!r}")


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Sweep each trace kind for every seed; return (table, json data, figure paths)."""
    settings = config["experiment"]
    lambdas = [float(v) for v in settings["lambdas"]]
    alphas = np.linspace(0.0, 1.0, int(settings["n_alphas"]))
    trace_kinds = list(settings["traces"])
    cells = [
        {
            "trace": trace,
            "lambdas": lambdas,
            "alphas": alphas,
            "runs": int(settings["runs"]),
            "episodes": int(settings["episodes"]),
            "n_states": int(settings["n_states"]),
            "seed": walk_seed(seed, int(settings["runs"])),
        }
        for trace in trace_kinds
        for seed in seeds
    ]
    sweeps = run_cells(
        sweep, cells, workers=workers, progress=progress, desc="random walk: (trace, seed)"
    )
    per_seed = {  # trace -> (seeds, lambdas, alphas)
        trace: np.stack(sweeps[k * len(seeds) : (k + 1) * len(seeds)])
        for k, trace in enumerate(trace_kinds)
    }

    rows: list[dict[str, Any]] = []
    table_rows: list[list[str]] = []
    for i, lam in enumerate(lambdas):
        table_cells = [f"{lam:g}"]
        for trace in trace_kinds:
            rms = per_seed[trace][:, i]  # (seeds, alphas)
            with np.errstate(invalid="ignore"):
                best = _best(rms.mean(0))
            best_rms = mean_std(rms[:, best])
            rows.append(
                {
                    "trace": trace,
                    "lam": lam,
                    "best_alpha": float(alphas[best]),
                    "best_rms": best_rms,
                    "rms_at_alpha_0": mean_std(rms[:, 0]),
                }
            )
            table_cells += [f"{alphas[best]:.2f}", format_mean_std(best_rms)]
        table_rows.append(table_cells)
    header = ["λ"] + [
        f"{TRACE_TITLES[trace]}: {what}" for trace in trace_kinds for what in ("best α", "RMS")
    ]
    table = (
        f"RMS error over the first {settings['episodes']} episodes of "
        f"{settings['runs']} runs ({settings['n_states']}-state random walk), at the α that is "
        f"best on average; {over_seeds(len(seeds))} (disjoint sets of walks).\n\n"
        + markdown_table(header, table_rows)
    )
    curves = {
        trace: {f"{lam:g}": per_seed[trace][:, i].mean(0) for i, lam in enumerate(lambdas)}
        for trace in trace_kinds
    }

    fig, axes = new_figure(1, len(trace_kinds), figsize=(4.8 * len(trace_kinds), 3.6), sharey=True)
    colours = lambda_colours(lambdas)
    for ax, trace in zip(axes[0], trace_kinds, strict=True):
        plot_rms_curves(ax, alphas, lambdas, per_seed[trace].mean(0), colours)
        ax.set_title(TRACE_TITLES[trace])
    axes[0][0].set_ylabel(f"RMS error, first {settings['episodes']} episodes")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{settings['n_states']}-state random walk (Sutton & Barto, Figures 12.6, 12.8)",
        fontsize=10,
    )
    figure = save_figure(fig, out / "random_walk.png")
    data = {"alphas": alphas, "curves": curves, "results": rows}
    return table, data, [figure]
