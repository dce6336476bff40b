"""The paper's toy experiment: how well does BP(λ)'s synthesiser learn the future gradient?

LineDraw (a fixed cue at t = 0, a 2-D target scored at the last step), a linear RNN (H = 30).
Only the synthesiser learns in the "frozen" conditions (RNN and readout stay at their random
initialisation); in the "learning" conditions the RNN and readout learn too. Each condition is a
set of hyper-parameters (the preset's ``experiment.cores``), e.g. the recurrent initialisation:
torch's uniform one, or an orthogonal W_hh ("frozen orthogonal"), whose state does not decay
after the cue. After training, the
cosine alignment between g(s_t) and the true future gradient G_t (by autograd through the same
sequences, :func:`agents.analysis.alignment`) is measured at every step t = 0 .. T-2, for each λ and
sequence length T (docs/algorithm.md#toy-task-line-draw). Each seed draws a different random RNN.

Every (condition, T, λ, seed) is a resumable cell (:mod:`agents.experiments.cells`), trained
into its own run folder and measured from its checkpoint. ``bpl reproduce toy`` writes:

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
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from agents.experiments.building import load_learner
from agents.experiments.cells import Cell, cell_name
from agents.experiments.comparison import synth_path
from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.random_walk import lambda_colours
from agents.experiments.run_config import RunConfig
from agents.experiments.training import CHECKPOINT, train_in_memory

__all__ = ["alignment_cell", "check", "evaluate", "make_cells", "summarise"]


def _eval_env(config: RunConfig):
    return gym.make_vec(config.env, num_envs=config.num_envs, **config.env_kwargs)


def alignment_cell(config: dict[str, Any], eval_sequences: int, eval_seed: int) -> list[float]:
    """Train the run ``config`` (a :class:`RunConfig` as a dict) in memory, return its
    alignment per step (what :func:`evaluate` measures, for experiments that keep no folders).

    Returns:
        (T - 1) floats: mean cosine(g(s_t), G_t) over ``eval_sequences`` sequences.
    """
    from agents.analysis import alignment

    run_config = RunConfig(**config)
    learner, _ = train_in_memory(run_config)
    return alignment(
        learner, _eval_env(run_config), n_sequences=eval_sequences, seed=eval_seed
    ).tolist()


def make_cells(config: dict[str, Any], seeds: Sequence[int]) -> list[Cell]:
    """One cell per (condition, T, λ, seed), key ``(condition, T, λ, seed)``, longest
    sequences first (a cell's cost grows with T, and starting the longest ones first keeps every
    worker busy until the end)."""
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
                    ).resolved()
                    cells.append(
                        Cell(
                            cell_name(
                                condition, f"T{int(length)}", f"lam{float(lam):g}", f"seed{seed}"
                            ),
                            (condition, int(length), float(lam), seed),
                            run_config,
                            {
                                "eval_sequences": int(settings["eval_sequences"]),
                                "eval_seed": 10_000 + seed,
                            },
                        )
                    )
    return cells


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every cell's run) before anything runs."""
    make_cells(config, [0])


def evaluate(
    folder: pathlib.Path, config: RunConfig, eval_sequences: int, eval_seed: int
) -> dict[str, Any]:
    """The alignment per step (T - 1 floats) of the learner a finished cell saved."""
    from agents.analysis import alignment

    learner = load_learner(config, folder / CHECKPOINT)
    curve = alignment(learner, _eval_env(config), n_sequences=eval_sequences, seed=eval_seed)
    return {"alignment": curve.tolist()}


def summarise(
    config: dict[str, Any],
    seeds: Sequence[int],
    results: Mapping[tuple, dict[str, Any]],
    out: pathlib.Path,
):
    """The table, JSON rows and figures of the finished cells (a (condition, T, λ) without
    any finished seed is left out)."""
    settings = config["experiment"]
    conditions, lengths = list(settings["cores"]), [int(t) for t in settings["sequence_lengths"]]
    lambdas = [float(v) for v in settings["lambdas"]]
    rows = []
    for condition in conditions:
        for length in lengths:
            for lam in lambdas:
                found = [
                    results[(condition, length, lam, s)]["alignment"]
                    for s in seeds
                    if (condition, length, lam, s) in results
                ]
                if not found:
                    continue
                per_seed = np.array(found)
                rows.append(
                    {
                        "core": condition,
                        "sequence_length": length,
                        "lam": lam,
                        "alignment": mean_std(per_seed.mean(axis=1)),
                        "alignment_per_step": {
                            "mean": per_seed.mean(axis=0),
                            "std": per_seed.std(axis=0, ddof=1) if len(found) > 1 else None,
                        },
                    }
                )

    by_key = {(r["core"], r["sequence_length"], r["lam"]): r for r in rows}

    def cell_text(condition: str, length: int, lam: float) -> str:
        row = by_key.get((condition, length, lam))
        return "–" if row is None else format_mean_std(row["alignment"])

    header = ["condition", "T"] + [f"λ = {lam:g}" for lam in lambdas]
    table_rows = [
        [c, str(t)] + [cell_text(c, t, lam) for lam in lambdas] for c in conditions for t in lengths
    ]
    path = synth_path(
        RunConfig.from_mapping({k: v for k, v in config.items() if k != "experiment"})
    )
    table = (
        f"Cosine alignment between g(s_t) and the true future gradient G_t, averaged over the "
        f"steps t = 0..T-2, after {config['updates']} updates of batch {config['num_envs']} "
        f"(synthesiser update: {path}); {over_seeds(len(seeds))} (random RNNs).\n\n"
        + markdown_table(header, table_rows)
    )

    colours = lambda_colours(lambdas)
    fig, axes = new_figure(1, len(conditions), figsize=(4.2 * len(conditions), 3.3), sharey=True)
    markers = ["o", "s", "^", "D", "v"]
    for ax, condition in zip(axes[0], conditions, strict=True):
        for i, length in enumerate(lengths):
            found = [
                by_key[(condition, length, lam)]
                for lam in lambdas
                if (condition, length, lam) in by_key
            ]
            ax.errorbar(
                [r["lam"] for r in found],
                [r["alignment"]["mean"] for r in found],
                yerr=[r["alignment"]["std"] or 0.0 for r in found],
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
                if (condition, length, lam) in by_key:
                    curve = by_key[(condition, length, lam)]["alignment_per_step"]["mean"]
                    ax.plot(np.arange(len(curve)), curve, color=colour, label=f"λ = {lam:g}")
            ax.set(title=f"{condition} RNN, T = {length}", xlabel="t", ylim=(-1.05, 1.05))
            ax.grid(alpha=0.3)
        row_axes[0].set_ylabel("cos(g(s_t), G_t)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    second = save_figure(fig, out / "alignment_per_step.png")
    return table, {"results": rows}, [first, second]
