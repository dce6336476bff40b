"""Mackey-Glass: held-out one-step-ahead MSE per learner, next to two reference predictors.

Each learner of the preset trains on windows of the train split of ``bpl/MackeyGlass-v0``
(the chaotic tau = 17 series), then is scored on the whole test split cut into consecutive
windows of the same length (:meth:`~bpl_envs.mackey_glass.MackeyGlassEnv.windows`), each read
from the zero state. References on the same windows: predicting the test split's mean (its
variance) and predicting x_{t+1} = x_t (persistence), the level a learner must beat to have
learnt the dynamics. Output files: see :mod:`~agents.experiments.held_out` (``test_mse.png``).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from agents.experiments.comparison import comparison_runs
from agents.experiments.held_out import (
    HeldOutSet,
    Metric,
    run_held_out,
    task_env,
    train_and_score,
)
from agents.experiments.run_config import RunConfig
from bpl_envs.mackey_glass import MackeyGlassEnv

__all__ = ["check", "held_out_set", "mackey_glass_cell", "references", "run"]

MSE = Metric("MSE", 1.0, 5, log_scale=True)


def held_out_set(run_config: RunConfig) -> HeldOutSet:
    """The series' test split as consecutive windows of the run's length (noise seed 0)."""
    return task_env(run_config, MackeyGlassEnv, split="test").windows()


def references(run_config: RunConfig) -> dict[str, float]:
    """MSE of predicting the test targets' mean (``mean_mse``) and the current input
    (``persistence_mse``) on :func:`held_out_set`."""
    inputs, targets, _ = held_out_set(run_config)
    targets = targets.astype(np.float64)
    return {
        "mean_mse": float(targets.var()),
        "persistence_mse": float(np.mean((targets - inputs) ** 2)),
    }


def mackey_glass_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one learner (a run as a dict) and score it on :func:`held_out_set`."""
    return train_and_score(config, held_out_set)


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run, on Mackey-Glass) before anything runs."""
    for run_config in comparison_runs(config).values():
        task_env(run_config, MackeyGlassEnv)


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train and test every learner for every seed; return (table, json data, figures)."""
    levels = references(next(iter(comparison_runs(config).values())))
    return run_held_out(
        config,
        out,
        seeds,
        cell=mackey_glass_cell,
        metric=MSE,
        references=levels,
        reference_line=("persistence (x_{t+1} = x_t)", levels["persistence_mse"]),
        figure_name="test_mse.png",
        progress=progress,
        workers=workers,
    )
