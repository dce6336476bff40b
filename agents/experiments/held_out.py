"""Train every learner of a comparison preset, then score it on held-out sequences.

The part the adding-problem, character-LM and Mackey-Glass experiments share
(:mod:`~agents.experiments.adding`, :mod:`~agents.experiments.charlm`,
:mod:`~agents.experiments.mackey_glass`). Each learner of ``experiment.learners`` trains on the
preset's env for its budget (:func:`~agents.experiments.training.train_in_memory`), then
:func:`agents.evaluation.evaluate_sequences` scores it on a fixed held-out set that the
experiment builds from the same env arguments. An entry may carry its own ``env_kwargs``
(merged into the preset's; :func:`~agents.experiments.comparison.comparison_runs`), e.g.
``{stream: true}`` for BP(λ) reading a stream.

Each experiment writes:

- ``results.md``: the held-out metric and the training metric (mean over the last 10 % of
  batches) per learner, mean ± std over seeds, under a line giving the reference level
  (chance, unigram entropy, ...);
- ``results.json``: ``experiment``, ``quick``, ``seeds``, ``elapsed_s``, ``config``,
  ``references`` and ``results``: one row per learner with ``label``, ``learner``,
  ``hyperparameters``, ``env_kwargs``, ``test`` and ``train`` (each ``{"mean", "std",
  "values"}``, in the metric's unit), ``train_curve`` (per update, mean over seeds) and
  ``seconds`` (mean training time);
- a PNG: the held-out metric per learner with the reference level, next to the training curves.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np

from agents.evaluation import evaluate_sequences
from agents.experiments.building import env_arguments
from agents.experiments.comparison import run_comparison
from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    new_figure,
    over_seeds,
    save_figure,
)
from agents.experiments.run_config import RunConfig
from agents.experiments.run_logs import FINAL_FRACTION
from agents.experiments.training import train_in_memory

__all__ = [
    "HeldOutSet",
    "Metric",
    "plot_held_out",
    "run_held_out",
    "task_env",
    "train_and_score",
]

EnvT = TypeVar("EnvT", bound=gym.Env)

HeldOutSet = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(inputs (N, T, n_in), targets (N, T, n_out), scored (T,))``."""


@dataclasses.dataclass(frozen=True)
class Metric:
    """How an experiment reports a loss in nats: ``name`` (``"MSE"``), multiplied by ``scale``
    (``1 / ln 2`` for bits), printed with ``digits`` decimals, plotted on a log axis if
    ``log_scale``."""

    name: str
    scale: float
    digits: int
    log_scale: bool = False


def task_env(run_config: RunConfig, env_class: type[EnvT], **overrides: Any) -> EnvT:
    """The run's env made by ``gym.make`` (its arguments without ``stream``: a held-out set is
    read as separate sequences; then ``overrides``), unwrapped.

    Raises:
        ValueError: the run's env is not an ``env_class`` (the experiment's task).
    """
    kwargs = env_arguments(run_config.env, run_config.env_kwargs)
    kwargs.pop("stream", None)
    env = gym.make(run_config.env, **{**kwargs, **overrides}).unwrapped
    if not isinstance(env, env_class):
        raise ValueError(
            f"this experiment scores {env_class.__name__} runs, but the preset's env "
            f"{run_config.env!r} is a {type(env).__name__}"
        )
    return env


def train_and_score(
    config: dict[str, Any], held_out: Callable[[RunConfig], HeldOutSet]
) -> dict[str, Any]:
    """Train one learner (a :class:`RunConfig` as a dict); score it on ``held_out(run)``.

    Returns:
        ``test_loss`` (mean loss per scored step on the held-out set, nats), ``train_loss``
        (each batch's, nats) and ``seconds`` (training time).
    """
    run_config = RunConfig(**config)
    start = time.perf_counter()
    learner, history = train_in_memory(run_config)
    seconds = time.perf_counter() - start
    scores = evaluate_sequences(learner, *held_out(run_config))
    return {
        "test_loss": scores["loss"],
        "train_loss": history.get("train/loss", []),
        "seconds": seconds,
    }


def _final(curve: list[float]) -> float:
    tail = max(1, math.ceil(FINAL_FRACTION * len(curve)))
    return float(np.mean(curve[-tail:]))


def run_held_out(
    config: dict[str, Any],
    out: pathlib.Path,
    seeds: list[int],
    *,
    cell: Callable[[dict[str, Any]], dict[str, Any]],
    metric: Metric,
    references: dict[str, float],
    reference_line: tuple[str, float],
    figure_name: str,
    progress: bool,
    workers: int,
) -> tuple[str, dict[str, Any], list[pathlib.Path]]:
    """Run ``cell`` for every learner and seed; return (markdown table, JSON data, figures).

    Args:
        cell: a module-level function of ``config`` (a run as a dict):
            :func:`train_and_score` with the experiment's held-out set.
        metric: the unit of the table.
        references: the reference levels to record in results.json, in the metric's unit.
        reference_line: ``(label, value)`` drawn on the figure and stated above the table.
        figure_name: the PNG's file name.
    """
    runs, results = run_comparison(
        config,
        seeds,
        cell,
        workers=workers,
        progress=progress,
        desc=f"{figure_name.removesuffix('.png')}: (learner, seed)",
    )
    rows, table_rows = [], []
    for label, run in runs.items():
        cell_results = results[label]
        curves = [np.asarray(c["train_loss"]) * metric.scale for c in cell_results]
        row = {
            "label": label,
            "learner": run.learner,
            "hyperparameters": run.hyperparameters,
            "env_kwargs": run.env_kwargs,
            "test": mean_std(c["test_loss"] * metric.scale for c in cell_results),
            "train": mean_std(_final(list(curve)) for curve in curves),
            "train_curve": np.mean(curves, axis=0),
            "seconds": float(np.mean([c["seconds"] for c in cell_results])),
        }
        rows.append(row)
        table_rows.append(
            [
                label,
                format_mean_std(row["test"], metric.digits),
                format_mean_std(row["train"], metric.digits),
                f"{row['seconds']:.0f}",
            ]
        )
    base = next(iter(runs.values()))
    reference_label, reference_value = reference_line
    table = (
        f"{base.env} {base.env_kwargs or ''}: held-out {metric.name} after {base.updates} "
        f"updates of batch {base.num_envs}; train = mean over the last 10 % of updates; "
        f"{over_seeds(len(seeds))}. Reference: {reference_label} = "
        f"{reference_value:.{metric.digits}f}.\n\n"
        + markdown_table(
            ["learner", f"test {metric.name}", f"train {metric.name}", "train time (s)"], table_rows
        )
    )

    figure = plot_held_out(
        rows, f"{base.env}: held-out {metric.name}", metric, reference_line, out / figure_name
    )
    return table, {"references": references, "results": rows}, [figure]


def plot_held_out(
    rows: list[dict[str, Any]],
    title: str,
    metric: Metric,
    reference_line: tuple[str, float],
    path: pathlib.Path,
) -> pathlib.Path:
    """The held-out metric per learner (bars) next to the training curves (moving average over
    5 % of the updates), both with the reference level dashed; ``rows`` as in results.json."""
    reference_label, reference_value = reference_line
    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    bars, curves_axis = axes[0]
    colours = [f"C{i}" for i in range(len(rows))]
    bars.bar(
        range(len(rows)),
        [r["test"]["mean"] for r in rows],
        yerr=[r["test"]["std"] or 0.0 for r in rows],
        color=colours,
        capsize=3,
    )
    bars.axhline(reference_value, color="black", ls="--", lw=1, label=reference_label)
    bars.set_xticks(
        range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right", fontsize=8
    )
    bars.set(ylabel=f"test {metric.name}", title=title)
    bars.legend(fontsize=7)
    for colour, row in zip(colours, rows, strict=True):
        curve = np.asarray(row["train_curve"])
        window = max(1, curve.size // 20)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        curves_axis.plot(np.arange(smooth.size) + window, smooth, color=colour, label=row["label"])
    curves_axis.axhline(reference_value, color="black", ls="--", lw=1)
    curves_axis.set(
        xlabel="update (batch of sequences)",
        ylabel=f"train {metric.name}",
        title="training (moving average)",
    )
    curves_axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for axis in (bars, curves_axis):
        if metric.log_scale:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3, which="both" if metric.log_scale else "major")
    return save_figure(fig, path)
