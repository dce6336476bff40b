"""What a training run logs and how it is read back: the SB3 logger of a run folder
(``progress.csv``, TensorBoard, a stdout table), the learning-curve figure, the final metrics, and
:class:`MetricHistory` for runs that write nothing."""

from __future__ import annotations

import csv
import math
import os
import pathlib
import sys

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger, configure

from agents.experiments.output import new_figure, save_figure
from agents.experiments.output_folder import record_output

__all__ = [
    "FINAL_FRACTION",
    "MetricHistory",
    "final_metrics",
    "make_logger",
    "plot_learning_curve",
    "read_progress",
    "replay_progress",
]

FINAL_FRACTION = 0.1  # final metrics: mean over the last 10 % of logged batches


class _EveryNthTable(HumanOutputFormat):
    """SB3's stdout table, printed only every ``every``-th dump (CSV/TensorBoard get all)."""

    def __init__(self, every: int) -> None:
        super().__init__(sys.stdout)
        self.every, self._dumps = every, 0

    def write(self, key_values, key_excluded, step: int = 0) -> None:
        self._dumps += 1
        if self._dumps % self.every == 0:
            super().write(key_values, key_excluded, step)


def make_logger(out: pathlib.Path, log_interval: int, stdout: bool = True) -> Logger:
    """An SB3 logger writing ``progress.csv`` and TensorBoard events into ``out`` (and, with
    ``stdout``, a table every ``log_interval`` dumps); both files are recorded in the folder's
    manifest."""
    record_output(out / "progress.csv")
    record_output(out / "events.out.tfevents.*", pattern=True)
    logger = configure(
        str(out), ["stdout", "csv", "tensorboard"] if stdout else ["csv", "tensorboard"]
    )
    logger.output_formats = [
        _EveryNthTable(log_interval) if isinstance(f, HumanOutputFormat) else f
        for f in logger.output_formats
    ]
    return logger


def read_progress(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of an SB3 ``progress.csv`` as float arrays (empty cells are NaN)."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return {}
    return {
        key: np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
        for key in rows[0]
    }


def replay_progress(logger: Logger, rows: dict[str, np.ndarray], upto: int) -> None:
    """Write the rows of an earlier ``progress.csv`` up to ``upto`` steps into the new CSV."""
    if not rows:
        return
    writers = [f for f in logger.output_formats if isinstance(f, CSVOutputFormat)]
    steps = rows["time/total_timesteps"]
    for i in np.flatnonzero(steps <= upto):
        values = {k: v[i].item() for k, v in rows.items() if not math.isnan(v[i])}
        for key in ("time/episodes", "time/total_timesteps"):
            if key in values:
                values[key] = int(values[key])
        for writer in writers:
            writer.write(values, {k: () for k in values}, int(steps[i]))


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_learning_curve(progress: dict[str, np.ndarray], title: str, path: pathlib.Path) -> None:
    """One panel per ``train/*`` metric (and the sequence length when it changes) against
    steps: every batch faintly, a moving average over 5 % of the run on top."""
    steps = progress.get("time/total_timesteps")
    keys = [
        k
        for k in sorted(progress)
        if k.startswith(("train/", "rollout/"))
        and np.isfinite(progress[k]).any()
        and (k != "train/sequence_length" or np.nanmin(progress[k]) != np.nanmax(progress[k]))
    ]
    if steps is None or not keys:
        return
    fig, axes = new_figure(1, len(keys), figsize=(3.4 * len(keys), 2.8))
    window = max(1, steps.size // 20)
    for ax, key in zip(axes[0], keys, strict=True):
        values = progress[key]
        ok = np.isfinite(values)
        ax.plot(steps[ok], values[ok], color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(steps[ok], _moving_average(values[ok], window), color="tab:blue", lw=1.8)
        ax.set(xlabel="env steps", title=key.split("/", 1)[1])
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def final_metrics(progress: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each ``train/*`` / ``rollout/*`` metric over the last 10 % of logged batches."""
    if not progress:
        return {}
    n = len(next(iter(progress.values())))
    tail = max(1, math.ceil(FINAL_FRACTION * n))
    return {
        key: float(np.nanmean(values[-tail:]))
        for key, values in progress.items()
        if key.startswith(("train/", "rollout/")) and np.isfinite(values[-tail:]).any()
    }


class MetricHistory(BaseCallback):
    """Keep every batch's logged metrics (what the SB3 logger holds at ``on_rollout_end``; the
    learner must dump its logger after every batch, ``learn(log_interval=1)``, so that a value
    is never read twice).

    Attributes:
        history: metric name -> list of values, one per batch that logged it; ``"time/steps"``
            holds the learner's step count after each batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {"time/steps": []}

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.history["time/steps"].append(self.model.num_timesteps)
        for key, value in self.model.logger.name_to_value.items():
            if isinstance(value, int | float | np.number):
                self.history.setdefault(key, []).append(float(value))
