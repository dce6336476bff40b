"""The paper's toy experiment: how well does BP(λ)'s synthesiser learn the future gradient?

LineDraw (a fixed cue at t = 0, a 2-D target scored at the last step), a linear RNN (H = 30).
Only the synthesiser learns in the "frozen" conditions (RNN and readout stay at their random
initialisation); in the "learning" conditions the RNN and readout learn too. Each condition is a
set of hyper-parameters (the preset's ``experiment.cores``), e.g. the recurrent initialisation:
torch's uniform one, or an orthogonal W_hh ("frozen orthogonal"), whose state does not decay
after the cue. After training, the
cosine alignment between g(s_t) and the true future gradient G_t (by autograd through the same
sequences, :func:`agents.analysis.alignment`) is measured at every step t = 0 .. T-2, for each λ
and sequence length T (docs/algorithm.md#toy-task-line-draw). Each seed draws a different random
RNN.

``bpl reproduce toy`` writes:

- ``results.md``: mean alignment over the steps of a sequence, mean ± std over seeds, one row
  per (condition, T) and one column per λ;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config`` and
  ``results``: one row per (condition, T, λ) with ``core`` (the condition), ``sequence_length``,
  ``lam``, ``alignment`` (``{"mean", "std", "values"}`` over seeds of the mean over steps) and
  ``alignment_per_step`` (``{"mean", "std"}``: lists over t = 0 .. T-2);
- ``alignment_vs_lambda.png`` and ``alignment_per_step.png``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import gymnasium as gym
import numpy as np

from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.parallel import run_cells
from agents.experiments.random_walk import lambda_colours
from agents.experiments.training import RunConfig, train_in_memory

__all__ = ["alignment_cell", "check", "run", "toy_cells"]


def alignment_cell(config: dict[str, Any], eval_sequences: int, eval_seed: int) -> list[float]:
    """Train the run ``config`` (a :class:`RunConfig` as a dict), return its alignment per step.

    Returns:
        (T - 1) floats: mean cosine(g(s_t), G_t) over ``eval_sequences`` sequences.
    """
    from agents.analysis import alignment

    run_config = RunConfig(**config)
    learner, _ = train_in_memory(run_config)
    eval_env = gym.make_vec(run_config.env, num_envs=run_config.num_envs, **run_config.env_kwargs)
    return alignment(learner, eval_env, n_sequences=eval_sequences, seed=eval_seed).tolist()


def toy_cells(config: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """One cell per (condition, T, λ, seed), longest sequences first (a cell's cost grows with
    T, and starting the longest ones first keeps every worker busy until the end)."""
    base = RunConfig.from_mapping({k: v for k, v in config.items() if k != "experiment"})
    settings = config["experiment"]
    cells = []
    for length in sorted(settings["sequence_lengths"], reverse=True):
        for condition, rates in settings["cores"].items():
            for lam in settings["lambdas"]:
                for seed in seeds:
                    run_config = base.derive(
                        env_kwargs={"sequence_length": int(length)},
                        hyperparameters={**rates, "lam": float(lam)},
                        seed=seed,
                    )
                    cells.append(
                        {
                            "config": run_config.to_dict(),
                            "eval_sequences": int(settings["eval_sequences"]),
                            "eval_seed": 10_000 + seed,
                            "_key": (condition, int(length), float(lam), seed),
                        }
                    )
    return cells


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every cell's run) before anything runs."""
    toy_cells(config, [0])


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train every (condition, T, λ, seed); return (table, json data, figure paths)."""
    settings = config["experiment"]
    cells = toy_cells(config, seeds)
    keys = [cell.pop("_key") for cell in cells]
    curves = run_cells(
        alignment_cell,
        cells,
        workers=workers,
        progress=progress,
        desc="toy: (condition, T, λ, seed)",
    )
    by_key = dict(zip(keys, curves, strict=True))

    conditions, lengths = list(settings["cores"]), [int(t) for t in settings["sequence_lengths"]]
    lambdas = [float(v) for v in settings["lambdas"]]
    rows = []
    for condition in conditions:
        for length in lengths:
            for lam in lambdas:
                per_seed = np.array([by_key[(condition, length, lam, s)] for s in seeds])
                rows.append(
                    {
                        "core": condition,
                        "sequence_length": length,
                        "lam": lam,
                        "alignment": mean_std(per_seed.mean(axis=1)),
                        "alignment_per_step": {
                            "mean": per_seed.mean(axis=0),
                            "std": per_seed.std(axis=0, ddof=1) if len(seeds) > 1 else None,
                        },
                    }
                )

    def find(condition, length, lam):
        return next(
            r
            for r in rows
            if (r["core"], r["sequence_length"], r["lam"]) == (condition, length, lam)
        )

    header = ["condition", "T"] + [f"λ = {lam:g}" for lam in lambdas]
    table_rows = [
        [c, str(t)] + [format_mean_std(find(c, t, lam)["alignment"]) for lam in lambdas]
        for c in conditions
        for t in lengths
    ]
    table = (
        f"Cosine alignment between g(s_t) and the true future gradient G_t, averaged over the "
        f"steps t = 0..T-2, after {config['updates']} updates of batch {config['num_envs']}; "
        f"{over_seeds(len(seeds))} (random RNNs).\n\n" + markdown_table(header, table_rows)
    )

    colours = lambda_colours(lambdas)
    fig, axes = new_figure(1, len(conditions), figsize=(4.2 * len(conditions), 3.3), sharey=True)
    markers = ["o", "s", "^", "D", "v"]
    for ax, condition in zip(axes[0], conditions, strict=True):
        for i, length in enumerate(lengths):
            means = [find(condition, length, lam)["alignment"]["mean"] for lam in lambdas]
            stds = [find(condition, length, lam)["alignment"]["std"] or 0.0 for lam in lambdas]
            ax.errorbar(
                lambdas,
                means,
                yerr=stds,
                marker=markers[i % len(markers)],
                ms=4,
                capsize=3,
                label=f"T = {length}",
            )
        ax.set(title=f"{condition} RNN", xlabel="λ")
        ax.set_ylim(min(-0.1, *(r["alignment"]["mean"] - 0.05 for r in rows)), 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean cos(g(s_t), G_t)")
    axes[0][0].legend(fontsize=8)
    first = save_figure(fig, out / "alignment_vs_lambda.png")

    fig, axes = new_figure(
        len(conditions),
        len(lengths),
        figsize=(3.3 * len(lengths), 2.6 * len(conditions)),
        sharey=True,
    )
    for row_axes, condition in zip(axes, conditions, strict=True):
        for ax, length in zip(row_axes, lengths, strict=True):
            for colour, lam in zip(colours, lambdas, strict=True):
                curve = find(condition, length, lam)["alignment_per_step"]["mean"]
                ax.plot(np.arange(len(curve)), curve, color=colour, label=f"λ = {lam:g}")
            ax.set(title=f"{condition} RNN, T = {length}", xlabel="t", ylim=(-1.05, 1.05))
            ax.grid(alpha=0.3)
        row_axes[0].set_ylabel("cos(g(s_t), G_t)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    second = save_figure(fig, out / "alignment_per_step.png")
    return table, {"results": rows}, [first, second]
