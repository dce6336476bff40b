"""Sequential digits (or sequential MNIST): test accuracy of BP(λ) against the baselines.

Each learner of the preset (BP(λ) for λ ∈ {0, 0.5, 1}, full and truncated BPTT, DNI, no
synthetic gradient, and the online approximations of RTRL: UORO, SnAp-1, e-prop) is trained on
the training split of ``bpl/SequentialDigits-v0`` (scikit-learn's 8×8 digits read row by row,
cross-entropy at the last row), then scored on the whole test split
with :func:`agents.evaluation.evaluate_sequences` (through
:func:`agents.experiments.training.test_metrics`). With ``--mnist-root DIR`` the same comparison
runs on ``bpl/SequentialMNIST-v0`` read from the IDX files in DIR, with the paper's seqMNIST
preset (LSTM H = 30, Adam 3e-4, batch 50, 50 epochs, λ = 1, γ = 0.9, β = 0.1;
docs/algorithm.md#sequential-mnist).

``bpl reproduce digits`` writes:

- ``results.md``: test accuracy and final training loss per learner, mean ± std over seeds;
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config`` and
  ``results``: one row per learner with ``label``, ``learner``, ``hyperparameters``,
  ``test_accuracy`` and ``test_loss`` and ``train_loss`` (each ``{"mean", "std", "values"}``),
  ``train_loss_curve`` (mean over seeds, per update) and ``seconds`` (mean training time);
- ``test_accuracy.png``: test accuracy per learner next to the training-loss curves.
"""

from __future__ import annotations

import copy
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
from agents.experiments.training import (
    RunConfig,
    comparison_runs,
    run_comparison,
    test_metrics,
    train_in_memory,
)

__all__ = ["check", "configure", "digits_cell", "preset_for", "run"]


def preset_for(preset: str, mnist_root: str | None = None) -> str:
    """``digits[_quick]``, or ``seqmnist[_quick]`` when MNIST files are given."""
    return preset.replace("digits", "seqmnist") if mnist_root else preset


def configure(settings: dict[str, Any], mnist_root: str | None = None) -> dict[str, Any]:
    """Point the seqMNIST preset at the user's IDX folder."""
    settings = copy.deepcopy(settings)
    if mnist_root:
        settings.setdefault("env_kwargs", {})["root"] = str(pathlib.Path(mnist_root).expanduser())
    return settings


def digits_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one learner (a :class:`RunConfig` as a dict) and score it on the test split."""
    run_config = RunConfig(**config)
    start = time.perf_counter()
    learner, history = train_in_memory(run_config)
    seconds = time.perf_counter() - start
    scores = test_metrics(learner, run_config)
    if not scores:
        raise ValueError(f"{run_config.env} has no test split to score the learners on")
    return {
        "test_accuracy": scores["test/accuracy"],
        "test_loss": scores["test/loss"],
        "train_loss": history.get("train/loss", []),
        "seconds": seconds,
    }


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run) before anything runs."""
    comparison_runs(config)


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train and test every learner for every seed; return (table, json data, figures)."""
    runs, results = run_comparison(
        config,
        seeds,
        digits_cell,
        workers=workers,
        progress=progress,
        desc="digits: (learner, seed)",
    )
    rows, table_rows = [], []
    for label, run_config in runs.items():
        cell = results[label]
        tail = max(1, len(cell[0]["train_loss"]) // 10)
        row = {
            "label": label,
            "learner": run_config.learner,
            "hyperparameters": run_config.hyperparameters,
            "test_accuracy": mean_std(c["test_accuracy"] for c in cell),
            "test_loss": mean_std(c["test_loss"] for c in cell),
            "train_loss": mean_std(np.mean(c["train_loss"][-tail:]) for c in cell),
            "train_loss_curve": np.mean([c["train_loss"] for c in cell], axis=0),
            "seconds": float(np.mean([c["seconds"] for c in cell])),
        }
        rows.append(row)
        table_rows.append(
            [
                label,
                format_mean_std(row["test_accuracy"]),
                format_mean_std(row["test_loss"]),
                format_mean_std(row["train_loss"]),
                f"{row['seconds']:.0f}",
            ]
        )
    base = next(iter(runs.values()))
    table = (
        f"{base.env}: test accuracy over the whole test split after {base.updates} updates of "
        f"batch {base.num_envs}; training loss = mean over the last 10 % of updates; "
        f"{over_seeds(len(seeds))}.\n\n"
        + markdown_table(
            ["learner", "test accuracy", "test loss", "train loss", "train time (s)"], table_rows
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
        curve = np.asarray(row["train_loss_curve"])
        window = max(1, curve.size // 20)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        curves.plot(np.arange(smooth.size) + window, smooth, color=colour, label=row["label"])
    curves.set(
        xlabel="update (batch of sequences)",
        ylabel="training loss (nats)",
        title="training loss (moving average)",
    )
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure = save_figure(fig, out / "test_accuracy.png")
    return table, {"results": rows}, [figure]
