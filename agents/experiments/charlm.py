"""Character-level language modelling: held-out bits per character per learner.

Each learner of the preset trains on windows of the train split of ``bpl/CharLM-v0`` (by
default CPython's documentation text), then is scored on the whole test split cut into
consecutive windows of the same length (:meth:`~bpl_envs.char_lm.CharLMEnv.windows`), each read
from the zero state. The reference is the unigram entropy of the train split's characters: the
bits per character of the best model without memory. Output files: see
:mod:`~agents.experiments.held_out` (``test_bits.png``).
"""

from __future__ import annotations

import math
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
from bpl_envs.char_lm import CharLMEnv

__all__ = ["charlm_cell", "check", "held_out_set", "run"]

BITS = Metric("bits per character", 1.0 / math.log(2.0), 3)


def held_out_set(run_config: RunConfig) -> HeldOutSet:
    """The run's text, test split, as consecutive windows of the run's length."""
    return task_env(run_config, CharLMEnv, split="test").windows()


def charlm_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one learner (a run as a dict) and score it on :func:`held_out_set`."""
    return train_and_score(config, held_out_set)


def check(config: dict[str, Any]) -> None:
    """Validate the preset (every learner's run, on the character LM) before anything runs."""
    for run_config in comparison_runs(config).values():
        task_env(run_config, CharLMEnv)


def run(
    config: dict[str, Any], out: pathlib.Path, seeds: list[int], *, progress: bool, workers: int
):
    """Train and test every learner for every seed; return (table, json data, figures)."""
    base = next(iter(comparison_runs(config).values()))
    entropy = task_env(base, CharLMEnv).unigram_entropy_bits
    return run_held_out(
        config,
        out,
        seeds,
        cell=charlm_cell,
        metric=BITS,
        references={"unigram_entropy_bits": entropy},
        reference_line=("unigram entropy of the train split", entropy),
        figure_name="test_bits.png",
        progress=progress,
        workers=workers,
    )
