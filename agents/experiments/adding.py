"""The adding problem: held-out MSE of BP(λ) against the baselines, next to the chance level.

Each learner of the preset trains on ``bpl/AddingProblem-v0`` (two marked values among T
uniform ones, their sum scored at the last step), then is scored on a fixed test set of
:data:`TEST_SEQUENCES` sequences drawn from ``default_rng(TEST_SEED)``
(:meth:`~bpl_envs.adding_problem.AddingProblemEnv.sample`; the training streams are seeded
0, 1, ...). Predicting 1.0 whatever the input scores 1/6 on average (the variance of the sum):
a learner far below it uses the markers. Output files: see :mod:`~agents.experiments.held_out`
(``test_mse.png``).
"""

from __future__ import annotations

import pathlib
from typing import Any

from agents.experiments.comparison import comparison_runs
from agents.experiments.held_out import (
    HeldOutSet,
    Metric,
    run_held_out,
    task_env,
    train_and_score,
)
from agents.experiments.run_config import RunConfig
from bpl_envs.adding_problem import ADDING_CHANCE_MSE, AddingProblemEnv

__all__ = ["TEST_SEED", "TEST_SEQUENCES", "adding_cell", "check", "held_out_set", "run"]

TEST_SEED = 20_240_001
"""Seed of the test sequences (far from the training seeds 0, 1, ...)."""
TEST_SEQUENCES = 1000
"""Number of test sequences (the standard error of the chance-level MSE over them is 0.006)."""
MSE = Metric("MSE", 1.0, 4, log_scale=True)


def held_out_set(run_config: RunConfig) -> HeldOutSet:
    """:data:`TEST_SEQUENCES` sequences of the run's length from ``default_rng(TEST_SEED)``."""
    return task_env(run_config, AddingProblemEnv).sample(TEST_SEQUENCES, TEST_SEED)


def adding_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one learner (a run as a dict) and score it on :func:`held_out_set`."""
    return train_and_score(config, held_out_set)


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run, on the adding problem) before anything runs."""
    for run_config in comparison_runs(config).values():
        task_env(run_config, AddingProblemEnv)


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train and test every learner for every seed; return (table, json data, figures)."""
    return run_held_out(
        config,
        out,
        seeds,
        cell=adding_cell,
        metric=MSE,
        references={"chance_mse": ADDING_CHANCE_MSE},
        reference_line=("chance (predict 1.0): 1/6", ADDING_CHANCE_MSE),
        figure_name="test_mse.png",
        progress=progress,
        workers=workers,
    )
