"""Sutton & Barto's 19-state random walk (Figures 12.6 and 12.8): TD(λ) error against α.

For each trace kind (accumulate, true online), each λ and each α on a grid, it runs 100
independent runs of 10 episodes from zero values, measures the RMS error over the 19 states at
the end of every episode, and averages over episodes and runs. All runs, λs and αs advance
together: one batch element per (λ, α, run), which is how :mod:`agents.traces` is meant to be
used; the walks come from the batched ``bpl/RandomWalk-v0`` env (the same walks for every λ, α).
The sweep itself lives in :mod:`agents.experiments.random_walk` (``bpl reproduce random-walk``
runs it for several seeds and writes a table).

    python examples/random_walk.py                      # writes docs/random_walk.png
    python examples/random_walk.py --runs 20 --out /tmp/walk.png

Expected (docs/algorithm.md#random-walk): α = 0 gives √0.3 ≈ 0.548 everywhere; best RMS ≈ 0.345
for TD(0) (α ≈ 0.8), ≈ 0.26 for accumulate λ = 0.8 (α ≈ 0.3), ≈ 0.25 for true online λ = 0.8
(α ≈ 0.4); accumulate traces diverge for λ >= 0.9 at large α (off the plot, as in the book).
"""

import argparse
import pathlib
import time

import numpy as np

from agents.experiments.random_walk import sweep  # the batched sweep, shared with `bpl`

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


if __name__ == "__main__":
    args = parse_args()
    alphas = np.linspace(0.0, 1.0, args.n_alphas)
    start = time.perf_counter()
    results = {
        trace: sweep(
            trace,
            LAMBDAS,
            alphas,
            args.runs,
            args.episodes,
            args.n_states,
            args.seed,
            progress=not args.no_progress,
        )
        for trace in ("accumulate", "true_online")
    }
    print(
        f"{args.runs} runs x {args.episodes} episodes, {len(LAMBDAS)} λ x {len(alphas)} α, "
        f"{time.perf_counter() - start:.1f} s"
    )
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
    fig.suptitle(
        f"{args.n_states}-state random walk (Sutton & Barto, Figures 12.6 and 12.8)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 0.89, 1))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"\nsaved {out}")
