"""One training run in an output folder: what ``bpl train``, every ``bpl sweep`` cell and every
``bpl reproduce`` cell do.

A run folder holds::

    run.json            the run's configuration (everything --resume needs) and its status
    config.yaml         the same configuration as a config file (``bpl train --config``)
    progress.csv        one row per batch of sequences (SB3 logger), also shown on stdout
    events.out.tfevents.*   the same metrics for TensorBoard
    checkpoint.pt       the learner at the end of the latest checkpointed batch
    learning_curve.png  the metrics of progress.csv against env steps
    metrics.json        final metrics (mean over the last 10 % of batches, plus test metrics)

Checkpoints are taken between batches of sequences, where a learner's state is complete, and
written once the batch's row of progress.csv is on disk: :func:`resume` continues from one
exactly, so on CPU a resumed run ends with the same parameters and the same progress.csv as an
uninterrupted one, even after the process was killed. Ctrl-C (KeyboardInterrupt) writes the
state at the end of the last completed batch, closes the logs and re-raises.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents.experiments.building import build_learner, load_learner, test_metrics
from agents.experiments.output import prepare_output_dir, write_json, write_text
from agents.experiments.output_folder import atomic_write
from agents.experiments.run_config import RunConfig
from agents.experiments.run_logs import (
    MetricHistory,
    final_metrics,
    make_logger,
    plot_learning_curve,
    read_progress,
    replay_progress,
)

__all__ = [
    "CHECKPOINT",
    "RUN_JSON",
    "BoundaryCheckpoints",
    "load_run",
    "resume",
    "train",
    "train_in_memory",
]

RUN_FORMAT = 1
CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
PROGRESS = "progress.csv"
METRICS = "metrics.json"


@dataclasses.dataclass
class _Capture:
    """A learner's state between two batches, serialised, with its counters."""

    data: bytes
    num_timesteps: int
    num_episodes: int
    due: bool = False  # to be written once confirmed
    written: bool = False


class BoundaryCheckpoints(BaseCallback):
    """Checkpoint the learner between batches of sequences.

    A batch's state is captured at its end (``on_rollout_end``) and confirmed when the next
    batch starts, after the learner has logged the batch; only confirmed states are written, so
    the progress.csv row of every checkpointed batch is on disk before the checkpoint, and a run
    stopped at any moment (Ctrl-C between a batch's end and its log line included) resumes with
    a complete log. The state at the end of training is confirmed at once.

    Args:
        path: the checkpoint file (written atomically: a temporary file, then a rename).
        save_every: write after the first batch ending at or past each multiple of this many
            steps (None: no schedule in steps).
        start: the learner's step count when training (re)starts.
        interval_s: write after the first batch ending at least this many seconds after the
            previous write (None: no schedule in time; 0: every batch).
        every_batch: capture every batch's state (a serialisation per batch) so that an
            interruption writes the last complete batch; otherwise only the batches due to be
            written are captured, and an interruption keeps the last checkpoint written.

    Attributes:
        num_timesteps, num_episodes: the learner's counters at the last confirmed state.
    """

    def __init__(
        self,
        path: pathlib.Path,
        save_every: int | None,
        start: int = 0,
        interval_s: float | None = None,
        every_batch: bool = True,
    ) -> None:
        super().__init__()
        self.path, self.save_every = path, save_every
        self.interval_s, self.every_batch = interval_s, every_batch
        self._next_save = None if save_every is None else (start // save_every + 1) * save_every
        self._last_write = time.monotonic()
        self._confirmed: _Capture | None = None
        self._candidate: _Capture | None = None
        self.num_timesteps = self.num_episodes = 0

    def _capture(self, due: bool = False) -> _Capture:
        learner: Any = self.model  # a bp-lambda learner, which also counts episodes
        buffer = io.BytesIO()
        learner.save(buffer)
        return _Capture(buffer.getvalue(), learner.num_timesteps, learner.num_episodes, due)

    def _confirm(self, capture: _Capture) -> None:
        self._confirmed, self._candidate = capture, None
        self.num_timesteps, self.num_episodes = capture.num_timesteps, capture.num_episodes

    def _due(self) -> bool:
        due = False
        steps, every, next_save = self.model.num_timesteps, self.save_every, self._next_save
        if every is not None and next_save is not None and steps >= next_save:
            due = True
            while next_save <= steps:
                next_save += every
            self._next_save = next_save
        if self.interval_s is not None and time.monotonic() - self._last_write >= self.interval_s:
            due = True
        return due

    def _on_training_start(self) -> None:
        self._confirm(self._capture())
        self._last_write = time.monotonic()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        due = self._due()
        if due or self.every_batch:
            self._candidate = self._capture(due)

    def _on_rollout_start(self) -> None:
        capture = self._candidate
        if capture is not None:  # the batch it holds is logged now
            self._confirm(capture)
            if capture.due:
                self.write()

    def _on_training_end(self) -> None:
        self._confirm(self._capture())

    def write(self) -> None:
        """Write the last confirmed state to ``path`` (nothing if it is written already)."""
        self._last_write = time.monotonic()
        capture = self._confirmed
        if capture is None or capture.written:
            return
        atomic_write(self.path, lambda file: file.write(capture.data))
        capture.written = True


def _versions() -> dict[str, str]:
    import stable_baselines3
    import torch

    return {
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }


def _write_status(
    out: pathlib.Path,
    config: RunConfig,
    learner_class_name: str,
    status: str,
    counters,
    elapsed: float,
) -> None:
    write_json(
        out / RUN_JSON,
        {
            "format": RUN_FORMAT,
            "config": config.to_dict(),
            "learner_class": learner_class_name,
            "status": status,
            "num_timesteps": counters.num_timesteps,
            "num_episodes": counters.num_episodes,
            "elapsed_s": round(elapsed, 3),
            "versions": _versions(),
        },
    )


def _run(
    learner,
    config: RunConfig,
    out: pathlib.Path,
    *,
    progress: bool,
    callbacks: Sequence[BaseCallback],
    checkpoint_seconds: float | None,
    plot: bool,
    elapsed_before: float = 0.0,
) -> dict[str, Any]:
    """Learn until the budget is spent; checkpoint, log, plot and write the metrics.

    Whatever happens (end of budget, Ctrl-C, an error), the last captured state is written to
    the checkpoint, the logs are closed and run.json says how the run ended (``finished``,
    ``interrupted`` or ``failed``).
    """
    checkpoints = BoundaryCheckpoints(
        out / CHECKPOINT,
        config.save_every,
        learner.num_timesteps,
        interval_s=checkpoint_seconds,
        every_batch=checkpoint_seconds is None,
    )
    if config.steps is not None:
        budget = {"total_timesteps": max(0, config.steps - learner.num_timesteps)}
    else:
        budget = {"episodes": max(0, config.updates - learner.num_episodes)}
    name = type(learner).__name__
    _write_status(out, config, name, "running", learner, elapsed_before)
    start, status, test = time.perf_counter(), "failed", {}
    try:
        learner.learn(
            **budget,
            callback=[checkpoints, *callbacks],
            log_interval=1,
            progress_bar=progress,
            reset_num_timesteps=False,
        )
        status = "finished"
        test = test_metrics(learner, config)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        elapsed = elapsed_before + time.perf_counter() - start
        checkpoints.write()
        learner.logger.close()
        _write_status(out, config, name, status, checkpoints, elapsed)
        metrics = _write_results(out, config, status, elapsed, checkpoints, test, plot)
    return metrics


def _write_results(
    out: pathlib.Path,
    config: RunConfig,
    status: str,
    elapsed: float,
    counters,
    test: dict[str, float],
    plot: bool,
) -> dict[str, Any]:
    progress = read_progress(out / PROGRESS) if (out / PROGRESS).is_file() else {}
    if plot:
        title = f"{config.learner} on {config.env} (seed {config.seed})"
        plot_learning_curve(progress, title, out / "learning_curve.png")
    metrics = {
        "status": status,
        "num_timesteps": counters.num_timesteps,
        "num_episodes": counters.num_episodes,
        "elapsed_s": round(elapsed, 3),
        "final": final_metrics(progress),
        "test": test,
    }
    write_json(out / METRICS, metrics)
    return metrics


def train(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = True,
    stdout: bool = True,
    callbacks: Sequence[BaseCallback] = (),
    checkpoint_seconds: float | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Run ``config`` from scratch into the folder ``out``.

    Everything is validated before the folder is touched. An existing non-empty folder is
    refused unless ``force``. ``progress``: a tqdm bar; ``stdout``: print the metrics table
    every ``config.log_interval`` batches. ``checkpoint_seconds``: also write a checkpoint at
    the first batch boundary this many seconds after the previous one, capturing only those
    batches (a long run of fast batches then pays no serialisation per batch, and an
    interruption resumes from the last checkpoint written); None: capture every batch.
    ``plot``: draw learning_curve.png (about a second) when the run stops.

    Returns:
        The final metrics (also written to ``out/metrics.json``).

    Raises:
        KeyboardInterrupt: after writing the checkpoint and the logs.
    """
    config = config.resolved()
    learner = build_learner(config)
    out = prepare_output_dir(out, force)
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    learner.set_logger(make_logger(out, config.log_interval, stdout))
    return _run(
        learner,
        config,
        out,
        progress=progress,
        callbacks=callbacks,
        checkpoint_seconds=checkpoint_seconds,
        plot=plot,
    )


def load_run(
    out: str | os.PathLike, *, require_checkpoint: bool = True
) -> tuple[RunConfig, dict[str, Any]]:
    """The configuration and status of the run in folder ``out`` (from its run.json).

    Raises:
        FileNotFoundError: ``out`` has no run.json, or no checkpoint when
            ``require_checkpoint``.
        ValueError: run.json is not a run record of this version (naming the file).
    """
    out = pathlib.Path(out)
    if not (out / RUN_JSON).is_file() or (require_checkpoint and not (out / CHECKPOINT).is_file()):
        raise FileNotFoundError(
            f"{out} is not a run folder to resume: it needs {RUN_JSON} and {CHECKPOINT}, as "
            "`bpl train --out` writes them"
        )
    try:
        run = json.loads((out / RUN_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{out / RUN_JSON} is not valid JSON ({error})") from None
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT or "config" not in run:
        raise ValueError(f"{out / RUN_JSON} is not a run record of format {RUN_FORMAT}")
    return RunConfig.from_mapping(run["config"], where=str(out / RUN_JSON)), run


def resume(
    out: str | os.PathLike,
    *,
    steps: int | None = None,
    updates: int | None = None,
    progress: bool = True,
    stdout: bool = True,
    callbacks: Sequence[BaseCallback] = (),
    checkpoint_seconds: float | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Continue the run in folder ``out`` from its checkpoint, to its budget (or a new one).

    The learner, its optimiser state, counters and the env's random state (and curriculum) come
    from the checkpoint, so the continued run is the uninterrupted one. Rows of progress.csv
    logged after the checkpoint are dropped (they are logged again). ``stdout``,
    ``checkpoint_seconds`` and ``plot``: as :func:`train`.
    """
    out = pathlib.Path(out)
    config, run = load_run(out)
    if steps is not None or updates is not None:
        config = dataclasses.replace(config, steps=steps, updates=updates)
    learner = load_learner(config, out / CHECKPOINT)
    old_rows = read_progress(out / PROGRESS) if (out / PROGRESS).is_file() else {}
    logger = make_logger(out, config.log_interval, stdout)
    replay_progress(logger, old_rows, learner.num_timesteps)
    learner.set_logger(logger)
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return _run(
        learner,
        config,
        out,
        progress=progress,
        callbacks=callbacks,
        checkpoint_seconds=checkpoint_seconds,
        plot=plot,
        elapsed_before=float(run.get("elapsed_s", 0.0)),
    )


def train_in_memory(config: RunConfig, callbacks: Sequence[BaseCallback] = ()):
    """Build and train ``config``'s learner with nothing written to disk.

    Returns:
        (the trained learner, metric name -> per-batch values, as :class:`MetricHistory`).
    """
    learner = build_learner(config)
    history = MetricHistory()
    budget = (
        {"total_timesteps": config.steps}
        if config.steps is not None
        else {"episodes": config.updates}
    )
    learner.learn(**budget, callback=[history, *callbacks], log_interval=1)
    return learner, history.history
