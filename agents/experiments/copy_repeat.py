"""Copy-repeat with the paper's curriculum: how long do the sequences get within a budget?

Each learner of the preset trains on ``bpl/CopyRepeat-v0`` with a
:class:`~bpl_envs.copy_repeat.CopyRepeatCurriculum` given to the env: start at N = R = 1 and,
whenever a batch's loss drops below 0.15 bits per output bit, R += 1 if R < N else N += 1 (T = (R +
1)·N + 3 = 5, 7, 9, 12, 15, ...; docs/algorithm.md#copy-repeat). The metric is the curriculum length
reached: the T of the stage the learner is on when the budget (a number of batches) runs out.
Learners that stop at the same stage are told apart by their final loss: the mean loss per output
bit over the last (up to) 100 batches of the stage they trained on last.

Every (learner, seed) is a resumable cell (:mod:`agents.experiments.comparison`); a cell's
curriculum (every batch's T and loss) is read from its checkpoint. ``bpl reproduce copy-repeat``
writes:

- ``results.md``: length reached, stages passed and final loss per learner, mean ± std over
  seeds, and which synthesiser update BP(λ) used;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config`` and
  ``results``: one row per learner with ``label``, ``learner``, ``hyperparameters``,
  ``synth_update``, ``synth_clip_fraction``, ``seeds``, ``seconds``, ``length_reached``,
  ``stages_passed`` and ``final_loss_bits`` (each ``{"mean", "std", "values"}``),
  ``length_curve`` and ``loss_curve`` (``{"update", "mean", "std"}`` over seeds: the T and the
  loss in bits per output bit of the batches);
- ``curriculum.png``: T and the loss against updates per learner (mean ± std over seeds).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.experiments.building import load_learner
from agents.experiments.cells import Cell
from agents.experiments.comparison import (
    cell_record,
    comparison_cells,
    comparison_runs,
    curve_over_seeds,
    learner_row,
    results_by_label,
)
from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.run_config import RunConfig
from agents.experiments.training import CHECKPOINT
from bpl_envs.copy_repeat import copy_repeat_length

__all__ = ["check", "evaluate", "final_stage_loss", "make_cells", "summarise"]

FINAL_LOSS_WINDOW = 100


def final_stage_loss(
    lengths: list[int], loss_bits: list[float], window: int = FINAL_LOSS_WINDOW
) -> float:
    """Mean loss of the last ``window`` batches of the stage trained on last.

    Args:
        lengths: T of each batch, in training order (n,).
        loss_bits: each batch's loss in bits per output bit (n,).
        window: at most this many batches, all from the trailing run of batches with T equal to
            ``lengths[-1]``.
    """
    final = len(lengths)
    start = final - 1
    while start > 0 and lengths[start - 1] == lengths[-1] and final - start < window:
        start -= 1
    return float(np.mean(loss_bits[start:final]))


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run, and the curriculum) before anything runs."""
    if "curriculum" not in config.get("env_kwargs", {}):
        raise ValueError(
            "the copy-repeat experiment needs env_kwargs.curriculum (the "
            "CopyRepeatCurriculum's arguments)"
        )
    comparison_runs(config)


def make_cells(config: dict[str, Any], seeds: Sequence[int]) -> list[Cell]:
    """One cell per (learner, seed)."""
    return comparison_cells(config, seeds)


def evaluate(folder: pathlib.Path, config: RunConfig) -> dict[str, Any]:
    """A finished cell's curriculum, as its checkpoint restores it into the cell's env.

    Returns:
        ``length_reached`` (T of the final stage), ``stages_passed``, ``lengths`` (T of each
        update's batch), ``loss_bits`` (each batch's loss in bits per output bit),
        ``final_loss_bits`` (:func:`final_stage_loss`), ``threshold_bits``, ``seconds`` and
        ``synth_clip_fraction``.
    """
    curriculum = load_learner(config, folder / CHECKPOINT).env.unwrapped.curriculum
    lengths = [copy_repeat_length(u.pattern_length, u.repeats) for u in curriculum.history]
    loss_bits = [u.loss_bits for u in curriculum.history]
    return {
        "length_reached": curriculum.sequence_length,
        "stages_passed": sum(update.advanced for update in curriculum.history),
        "lengths": lengths,
        "loss_bits": loss_bits,
        "final_loss_bits": final_stage_loss(lengths, loss_bits),
        "threshold_bits": curriculum.threshold_bits,
        **cell_record(folder),
    }


def summarise(
    config: dict[str, Any],
    seeds: Sequence[int],
    results: Mapping[tuple, dict[str, Any]],
    out: pathlib.Path,
):
    """The table, JSON rows and figure of the finished cells."""
    runs = comparison_runs(config)
    rows, table_rows = [], []
    for label, cells in results_by_label(runs, seeds, results).items():
        row = {
            **learner_row(label, runs[label], cells),
            "length_reached": mean_std(c["length_reached"] for c in cells),
            "stages_passed": mean_std(c["stages_passed"] for c in cells),
            "final_loss_bits": mean_std(c["final_loss_bits"] for c in cells),
            "length_curve": curve_over_seeds([c["lengths"] for c in cells]),
            "loss_curve": curve_over_seeds([c["loss_bits"] for c in cells]),
        }
        rows.append(row)
        table_rows.append(
            [
                label,
                row["synth_update"],
                format_mean_std(row["length_reached"], 1),
                format_mean_std(row["stages_passed"], 1),
                format_mean_std(row["final_loss_bits"], 3),
            ]
        )
    base = next(iter(runs.values()))
    threshold = next(iter(results.values()))["threshold_bits"]
    table = (
        f"Copy-repeat curriculum: sequence length T reached after {base.updates} updates of "
        f"batch {base.num_envs} (the curriculum starts at T = 5; a stage is passed below "
        f"{threshold} bits per output bit); final loss: mean bits per output bit over the last "
        f"(up to) {FINAL_LOSS_WINDOW} batches of the last stage trained; "
        f"{over_seeds(len(seeds))}.\n\n"
        + markdown_table(
            [
                "learner",
                "synthesiser update",
                "length reached (T)",
                "stages passed",
                "final loss (bits)",
            ],
            table_rows,
        )
    )

    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    lengths, losses = axes[0]
    for i, row in enumerate(rows):
        for ax, key in ((lengths, "length_curve"), (losses, "loss_curve")):
            curve = row[key]
            update, mean = np.asarray(curve["update"]), np.asarray(curve["mean"])
            ax.plot(update, mean, color=f"C{i}", label=row["label"], lw=1.2)
            if curve["std"] is not None:
                std = np.asarray(curve["std"])
                ax.fill_between(update, mean - std, mean + std, color=f"C{i}", alpha=0.15, lw=0)
    lengths.set(
        xlabel="update (batch of sequences)",
        ylabel="sequence length T",
        title="curriculum (mean ± std over seeds)",
    )
    losses.axhline(threshold, color="k", lw=0.8, ls="--")
    losses.set(
        xlabel="update (batch of sequences)",
        ylabel="loss (bits per output bit)",
        title="training loss (mean ± std over seeds)",
    )
    losses.set_ylim(bottom=0)
    for ax in (lengths, losses):
        ax.grid(alpha=0.3)
    losses.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure = save_figure(fig, out / "curriculum.png")
    return table, {"results": rows}, [figure]
