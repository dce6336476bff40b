"""Copy-repeat with the paper's curriculum: how long do the sequences get within a budget?

Each learner of the preset trains on ``bpl/CopyRepeat-v0`` with a
:class:`~bpl_envs.copy_repeat.CopyRepeatCurriculum` given to the env: start at N = R = 1 and,
whenever a batch's loss drops below 0.15 bits per output bit, R += 1 if R < N else N += 1
(T = (R + 1)·N + 3 = 5, 7, 9, 12, 15, ...; docs/algorithm.md#copy-repeat). The metric is the
curriculum length reached: the T of the stage the learner is on when the budget (a number of
batches) runs out. Learners that stop at the same stage are told apart by their final loss: the
mean loss per output bit over the last (up to) 100 batches of the stage they trained on last.

``bpl reproduce copy-repeat`` writes:

- ``results.md``: length reached, stages passed and final loss per learner, mean ± std over
  seeds;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config`` and
  ``results``: one row per learner with ``label``, ``learner``, ``hyperparameters``,
  ``length_reached``, ``stages_passed`` and ``final_loss_bits`` (each ``{"mean", "std",
  "values"}``),
  ``length_curve`` (the T of each update, mean over seeds) and ``seconds``;
- ``curriculum.png``: T against updates per learner.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.training import RunConfig, comparison_runs, run_comparison, train_in_memory
from bpl_envs.copy_repeat import copy_repeat_length

__all__ = ["check", "curriculum_cell", "final_stage_loss", "run"]

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


def curriculum_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one learner (a :class:`RunConfig` as a dict) on the curriculum; report its stages.

    Returns:
        ``length_reached`` (T of the final stage), ``stages_passed``, ``lengths`` (T of each
        update's batch), ``loss_bits`` (each batch's loss in bits per output bit),
        ``final_loss_bits`` (:func:`final_stage_loss`), ``threshold_bits`` (the curriculum's),
        ``seconds``.
    """
    run_config = RunConfig(**config)
    if "curriculum" not in run_config.env_kwargs:
        raise ValueError(
            "the copy-repeat experiment needs env_kwargs.curriculum (the "
            "CopyRepeatCurriculum's arguments)"
        )
    start = time.perf_counter()
    learner, _ = train_in_memory(run_config)
    seconds = time.perf_counter() - start
    curriculum = learner.env.unwrapped.curriculum
    lengths = [copy_repeat_length(u.pattern_length, u.repeats) for u in curriculum.history]
    loss_bits = [u.loss_bits for u in curriculum.history]
    return {
        "length_reached": copy_repeat_length(curriculum.pattern_length, curriculum.repeats),
        "stages_passed": sum(update.advanced for update in curriculum.history),
        "lengths": lengths,
        "loss_bits": loss_bits,
        "final_loss_bits": final_stage_loss(lengths, loss_bits),
        "threshold_bits": curriculum.threshold_bits,
        "seconds": seconds,
    }


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run) before anything runs."""
    comparison_runs(config)


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train every learner for every seed; return (table, json data, figure paths)."""
    runs, results = run_comparison(
        config,
        seeds,
        curriculum_cell,
        workers=workers,
        progress=progress,
        desc="copy-repeat: (learner, seed)",
    )
    rows, table_rows = [], []
    for label, run_config in runs.items():
        cell = results[label]
        row = {
            "label": label,
            "learner": run_config.learner,
            "hyperparameters": run_config.hyperparameters,
            "length_reached": mean_std(c["length_reached"] for c in cell),
            "stages_passed": mean_std(c["stages_passed"] for c in cell),
            "final_loss_bits": mean_std(c["final_loss_bits"] for c in cell),
            "length_curve": np.mean([c["lengths"] for c in cell], axis=0),
            "seconds": float(np.mean([c["seconds"] for c in cell])),
        }
        rows.append(row)
        table_rows.append(
            [
                label,
                format_mean_std(row["length_reached"], 1),
                format_mean_std(row["stages_passed"], 1),
                format_mean_std(row["final_loss_bits"], 3),
                f"{row['seconds']:.0f}",
            ]
        )
    base = next(iter(runs.values()))
    threshold = next(iter(results.values()))[0]["threshold_bits"]
    table = (
        f"Copy-repeat curriculum: sequence length T reached after {base.updates} updates of "
        f"batch {base.num_envs} (the curriculum starts at T = 5; a stage is passed below "
        f"{threshold} bits per output bit); final loss: mean bits per output bit over the last "
        f"(up to) {FINAL_LOSS_WINDOW} batches of the last stage trained; "
        f"{over_seeds(len(seeds))}.\n\n"
        + markdown_table(
            [
                "learner",
                "length reached (T)",
                "stages passed",
                "final loss (bits)",
                "train time (s)",
            ],
            table_rows,
        )
    )

    fig, axes = new_figure(1, 1, figsize=(6.5, 3.8))
    ax = axes[0][0]
    for i, row in enumerate(rows):
        curve = row["length_curve"]
        ax.plot(
            np.arange(1, len(curve) + 1),
            curve,
            color=f"C{i}",
            label=row["label"],
            drawstyle="steps-post",
        )
    ax.set(
        xlabel="update (batch of sequences)",
        ylabel="sequence length T (mean over seeds)",
        title="copy-repeat curriculum",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure = save_figure(fig, out / "curriculum.png")
    return table, {"results": rows}, [figure]
