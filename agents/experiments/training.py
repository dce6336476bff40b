"""One training run in an output folder: what ``bpl train`` and every ``bpl sweep`` cell do.

A run folder holds::

    run.json            the run's configuration (everything --resume needs) and its status
    config.yaml         the same configuration as a config file (``bpl train --config``)
    progress.csv        one row per batch of sequences (SB3 logger), also shown on stdout
    events.out.tfevents.*   the same metrics for TensorBoard
    checkpoint.pt       the learner at the end of the latest checkpointed batch
    learning_curve.png  the metrics of progress.csv against env steps
    metrics.json        final metrics (mean over the last 10 % of batches, plus test metrics)

Checkpoints are taken between batches of sequences (from a callback's ``on_rollout_end``), where
a learner's state is complete: :func:`resume` continues from one exactly, so on CPU a resumed run
ends with the same parameters as an uninterrupted one. Ctrl-C (KeyboardInterrupt) writes the
state at the end of the last completed batch, closes the logs and re-raises.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium.envs.registration import load_env_creator
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger, configure

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.evaluation import evaluate_sequences, last_step_targets
from agents.experiments import hyperparameters as hp
from agents.experiments.config import check_keys, load_config
from agents.experiments.output import (
    new_figure,
    prepare_output_dir,
    save_figure,
    write_json,
    write_text,
)
from agents.experiments.output_folder import atomic_write, record_output
from agents.experiments.parallel import run_cells
from agents.registry import BUILT_IN, get_learner, learner_entries
from agents.sequence_learner import SequenceLearner

__all__ = [
    "BoundaryCheckpoints",
    "MetricHistory",
    "RunConfig",
    "build_env",
    "build_learner",
    "comparison_runs",
    "env_arguments",
    "final_metrics",
    "learner_class",
    "learner_names",
    "load_run",
    "plot_learning_curve",
    "read_progress",
    "resume",
    "test_metrics",
    "test_split",
    "train",
    "train_in_memory",
]

RUN_FORMAT = 1
CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
PROGRESS = "progress.csv"
FINAL_FRACTION = 0.1  # final metrics: mean over the last 10 % of logged batches


# ---------------------------------------------------------------------------- configuration
def learner_names() -> dict[str, str]:
    """Registered learner name -> one-line description (naming the distribution or
    ``register_learner`` for a learner that is not built in)."""
    return {
        name: entry.description + ("" if entry.origin == BUILT_IN else f" [{entry.origin}]")
        for name, entry in learner_entries().items()
    }


def learner_class(name: str) -> type:
    """The learner class registered as ``name``; a ValueError lists the valid names."""
    return get_learner(name)


def _is_sequence_learner(cls: type) -> bool:
    return issubclass(cls, SequenceLearner)


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        number = hp.convert(name, value, int)
    except ValueError:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a training run (and rebuilds it for ``--resume``).

    Attributes:
        env: a registered env id, e.g. ``"bpl/SequentialDigits-v0"``.
        learner: a registered learner name (``bpl list``).
        env_kwargs: keyword arguments of the env (plain YAML data; a mapping given for an
            argument whose type is a class, e.g. the copy-repeat ``curriculum``, builds it).
        hyperparameters: the learner's constructor arguments.
        num_envs: parallel sequences B (a vector env of B sub-envs).
        steps: budget in env transitions (B per token), or None.
        updates: budget in batches of sequences, or None (exactly one budget is set).
        seed: seeds the learner's initialisation and the env.
        save_every: checkpoint after the first batch ending at or past each multiple of this
            many steps (None: only at the end).
        log_interval: print the metrics table to stdout every this many batches (the CSV and
            TensorBoard get every batch).
    """

    env: str
    learner: str
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 1
    steps: int | None = None
    updates: int | None = None
    seed: int = 0
    save_every: int | None = None
    log_interval: int = 10

    KEYS = (
        "env",
        "learner",
        "env_kwargs",
        "hyperparameters",
        "num_envs",
        "steps",
        "updates",
        "seed",
        "save_every",
        "log_interval",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.env, str):
            raise TypeError(f"env must be an env id (str), got {self.env!r}")
        if not isinstance(self.learner, str):
            raise TypeError(f"learner must be a learner name (str), got {self.learner!r}")
        for name in ("env_kwargs", "hyperparameters"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping, got {value!r}")
            else:
                setattr(self, name, dict(value))
        self.num_envs = _check_int("num_envs", self.num_envs, 1)
        self.steps = _check_int("steps", self.steps, 1, allow_none=True)
        self.updates = _check_int("updates", self.updates, 1, allow_none=True)
        if (self.steps is None) == (self.updates is None):
            raise ValueError(
                f"give exactly one budget, steps or updates (got steps={self.steps}, "
                f"updates={self.updates})"
            )
        self.seed = _check_int("seed", self.seed, 0)
        self.save_every = _check_int("save_every", self.save_every, 1, allow_none=True)
        self.log_interval = _check_int("log_interval", self.log_interval, 1)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> RunConfig:
        """Build from a mapping (a config file); unknown keys are refused."""
        check_keys(where, data, cls.KEYS, required=("env", "learner"))
        return cls(**dict(data))

    @classmethod
    def from_file(cls, name_or_path: str) -> tuple[RunConfig, list[str]]:
        """Build from a config file or preset; also return the sections it holds for other
        commands.

        Experiment presets hold a training run (the top level) plus an ``experiment:`` section
        that only ``bpl reproduce`` reads; its name is returned so that the caller can say that
        it is not used.
        """
        data = load_config(name_or_path)
        others = sorted(set(data) & {"experiment"})
        train = {k: v for k, v in data.items() if k not in others}
        return cls.from_mapping(train, where=str(name_or_path)), others

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    def resolved(self) -> RunConfig:
        """A copy whose hyper-parameters are checked against the learner and converted to
        their types (what run.json records)."""
        cls = learner_class(self.learner)
        owner = f"learner {self.learner!r}"
        return dataclasses.replace(
            self, hyperparameters=hp.resolve(cls, self.hyperparameters, owner)
        )

    def derive(
        self,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> RunConfig:
        """A copy with ``env_kwargs`` / ``hyperparameters`` merged into this one's (given keys
        win) and other fields replaced, e.g. ``derive(learner="bptt", seed=3)``."""
        return dataclasses.replace(
            self,
            env_kwargs={**self.env_kwargs, **(env_kwargs or {})},
            hyperparameters={**self.hyperparameters, **(hyperparameters or {})},
            **fields,
        )


# ----------------------------------------------------------------------------- env, learner
def _entry_class(env_id: str) -> type:
    """The env class (or creator) registered as ``env_id``."""
    if env_id not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("bpl/"))
        raise ValueError(f"unknown env id {env_id!r}; registered bpl ids: {known}")
    entry_point = gym.spec(env_id).entry_point
    return entry_point if not isinstance(entry_point, str) else load_env_creator(entry_point)


def env_arguments(env_id: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert env keyword arguments against the env class's constructor.

    A mapping given for an argument annotated with a class of :mod:`bpl_envs` (e.g.
    ``curriculum: CopyRepeatCurriculum | None``) is passed to that class's constructor, checked
    the same way; other values are converted to the argument's annotation.

    Raises:
        ValueError: unknown env id (listing the registered ones) or argument (listing the valid
            ones), or a value that does not fit.
    """
    env_class = _entry_class(env_id)
    known = hp.hyperparameters_of(env_class)
    known.pop("render_mode", None)
    names = {str(k).replace("-", "_"): v for k, v in given.items()}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown env argument(s) {unknown} for {env_id}; valid: {sorted(known)}")
    converted = {}
    for name, value in names.items():
        annotation = known[name].annotation
        classes = [
            m
            for m in hp.union_members(annotation)
            if isinstance(m, type)
            and m not in (bool, int, float, str, type(None))
            and m.__module__.startswith("bpl_envs")
        ]
        if isinstance(value, Mapping) and classes:
            converted[name] = classes[0](**hp.resolve(classes[0], value, f"{env_id} {name}"))
        else:
            converted[name] = hp.convert(name, value, annotation, env_id)
    return converted


def build_env(env_id: str, env_kwargs: Mapping[str, Any], num_envs: int, vector: bool):
    """``gym.make_vec(env_id, num_envs, **kwargs)`` for recurrent learners (the sub-envs are the
    batch), ``gym.make(env_id, **kwargs)`` for single-env learners (``num_envs`` must be 1)."""
    kwargs = env_arguments(env_id, env_kwargs)
    if vector:
        return gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    if num_envs != 1:
        raise ValueError(
            f"this learner learns from a single env; num_envs must be 1, got {num_envs}"
        )
    return gym.make(env_id, **kwargs)


def build_learner(config: RunConfig, verbose: int = 0):
    """Validate the configuration and build the env and the learner (nothing is written).

    Raises:
        ValueError: unknown learner, env id, env argument or hyper-parameter (each listing the
            valid choices), or a value the learner refuses.
    """
    cls = learner_class(config.learner)
    kwargs = hp.resolve(cls, config.hyperparameters, owner=f"learner {config.learner!r}")
    env = build_env(config.env, config.env_kwargs, config.num_envs, _is_sequence_learner(cls))
    if "n_envs" in hp.constructor_parameters(cls):
        kwargs["n_envs"] = config.num_envs
    return cls(env, seed=config.seed, verbose=verbose, **kwargs)


# --------------------------------------------------------------------------- logging, plots
class _EveryNthTable(HumanOutputFormat):
    """SB3's stdout table, printed only every ``every``-th dump (CSV/TensorBoard get all)."""

    def __init__(self, every: int) -> None:
        super().__init__(sys.stdout)
        self.every, self._dumps = every, 0

    def write(self, key_values, key_excluded, step: int = 0) -> None:
        self._dumps += 1
        if self._dumps % self.every == 0:
            super().write(key_values, key_excluded, step)


def _make_logger(out: pathlib.Path, log_interval: int, stdout: bool = True) -> Logger:
    record_output(out / PROGRESS)
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


def _replay_progress(logger: Logger, rows: dict[str, np.ndarray], upto: int) -> None:
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
            writer.write(values, {k: None for k in values}, int(steps[i]))


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


# ------------------------------------------------------------------------------ the run
class BoundaryCheckpoints(BaseCallback):
    """Keep the learner's state at the end of every batch; write it every ``save_every`` steps.

    The state is held in memory as a checkpoint (a few hundred kB for the paper's models), so
    an interruption at any point can still write the state of the last complete batch.

    Attributes:
        num_timesteps, num_episodes: the learner's counters at the last snapshot.
    """

    def __init__(self, path: pathlib.Path, save_every: int | None, start: int = 0) -> None:
        super().__init__()
        self.path, self.save_every = path, save_every
        self._next_save = None if save_every is None else (start // save_every + 1) * save_every
        self._snapshot: bytes | None = None
        self.num_timesteps = self.num_episodes = 0

    def _take_snapshot(self) -> None:
        buffer = io.BytesIO()
        self.model.save(buffer)
        self._snapshot = buffer.getvalue()
        self.num_timesteps, self.num_episodes = self.model.num_timesteps, self.model.num_episodes

    def _on_training_start(self) -> None:
        self._take_snapshot()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._take_snapshot()
        if self._next_save is not None and self.model.num_timesteps >= self._next_save:
            self.write()
            while self._next_save <= self.model.num_timesteps:
                self._next_save += self.save_every

    def write(self) -> None:
        """Write the last snapshot to ``path`` (atomically: a temporary file, then a rename)."""
        if self._snapshot is None:
            return
        snapshot = self._snapshot
        atomic_write(self.path, lambda file: file.write(snapshot))


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
    elapsed_before: float = 0.0,
) -> dict[str, Any]:
    """Learn until the budget is spent; checkpoint, log, plot and write the metrics.

    Whatever happens (end of budget, Ctrl-C, an error), the state of the last complete batch is
    written to the checkpoint, the logs are closed and run.json says how the run ended
    (``finished``, ``interrupted`` or ``failed``).
    """
    checkpoints = BoundaryCheckpoints(out / CHECKPOINT, config.save_every, learner.num_timesteps)
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
        metrics = _write_results(out, config, status, elapsed, checkpoints, test)
    return metrics


def test_split(env_id: str, env_kwargs: Mapping[str, Any]):
    """The whole test split of a classification env scored at its last step, e.g.
    ``bpl/SequentialDigits-v0``: ``(inputs (N, T, n_in), targets (N, T, n_out), scored (T,))``,
    or None for envs without one (no ``split`` argument or no ``dataset()``)."""
    if "split" not in hp.hyperparameters_of(_entry_class(env_id)):
        return None
    env = gym.make(env_id, **{**env_arguments(env_id, env_kwargs), "split": "test"})
    task = env.unwrapped.task
    if not hasattr(env.unwrapped, "dataset") or task.loss != "ce" or task.scoring != "last":
        return None
    inputs, labels = env.unwrapped.dataset()
    steps = inputs.shape[1]
    return inputs, last_step_targets(labels, task.output_size, steps), np.arange(steps) == steps - 1


def test_metrics(learner, config: RunConfig) -> dict[str, float]:
    """``{"test/loss", "test/accuracy"}`` of the learner on the env's test split ({} if the env
    has none), by :func:`agents.evaluation.evaluate_sequences`."""
    split = test_split(config.env, config.env_kwargs)
    if split is None:
        return {}
    scores = evaluate_sequences(learner, *split)
    return {f"test/{key}": float(scores[key]) for key in ("loss", "accuracy") if key in scores}


def _write_results(
    out: pathlib.Path,
    config: RunConfig,
    status: str,
    elapsed: float,
    counters,
    test: dict[str, float],
) -> dict[str, Any]:
    progress = read_progress(out / PROGRESS) if (out / PROGRESS).is_file() else {}
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
    write_json(out / "metrics.json", metrics)
    return metrics


def train(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = True,
    stdout: bool = True,
    callbacks: Sequence[BaseCallback] = (),
) -> dict[str, Any]:
    """Run ``config`` from scratch into the folder ``out``.

    Everything is validated before the folder is touched. An existing non-empty folder is
    refused unless ``force``. ``progress``: a tqdm bar; ``stdout``: print the metrics table
    every ``config.log_interval`` batches.

    Returns:
        The final metrics (also written to ``out/metrics.json``).

    Raises:
        KeyboardInterrupt: after writing the checkpoint of the last complete batch and the logs.
    """
    config = config.resolved()
    learner = build_learner(config)
    out = prepare_output_dir(out, force)
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    learner.set_logger(_make_logger(out, config.log_interval, stdout))
    return _run(learner, config, out, progress=progress, callbacks=callbacks)


def load_run(out: str | os.PathLike) -> tuple[RunConfig, dict[str, Any]]:
    """The configuration and status of the run in folder ``out`` (from its run.json)."""
    out = pathlib.Path(out)
    if not (out / RUN_JSON).is_file() or not (out / CHECKPOINT).is_file():
        raise FileNotFoundError(
            f"{out} is not a run folder to resume: it needs {RUN_JSON} and {CHECKPOINT}, as "
            "`bpl train --out` writes them"
        )
    run = json.loads((out / RUN_JSON).read_text())
    if run.get("format") != RUN_FORMAT:
        raise ValueError(f"{out / RUN_JSON} has format {run.get('format')!r}, not {RUN_FORMAT}")
    return RunConfig.from_mapping(run["config"], where=str(out / RUN_JSON)), run


def resume(
    out: str | os.PathLike,
    *,
    steps: int | None = None,
    updates: int | None = None,
    progress: bool = True,
    callbacks: Sequence[BaseCallback] = (),
) -> dict[str, Any]:
    """Continue the run in folder ``out`` from its checkpoint, to its budget (or a new one).

    The learner, its optimiser state, counters and the env's random state (and curriculum) come
    from the checkpoint, so the continued run is the uninterrupted one. Rows of progress.csv
    logged after the checkpoint are dropped (they are logged again).
    """
    out = pathlib.Path(out)
    config, _ = load_run(out)
    if steps is not None or updates is not None:
        config = dataclasses.replace(config, steps=steps, updates=updates)
    cls = learner_class(config.learner)
    env = build_env(config.env, config.env_kwargs, config.num_envs, _is_sequence_learner(cls))
    learner = cls.load(out / CHECKPOINT, env=env)
    old_rows = read_progress(out / PROGRESS) if (out / PROGRESS).is_file() else {}
    elapsed_before = _previous_elapsed(out)
    logger = _make_logger(out, config.log_interval)
    _replay_progress(logger, old_rows, learner.num_timesteps)
    learner.set_logger(logger)
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return _run(
        learner, config, out, progress=progress, callbacks=callbacks, elapsed_before=elapsed_before
    )


def _previous_elapsed(out: pathlib.Path) -> float:
    return float(json.loads((out / RUN_JSON).read_text()).get("elapsed_s", 0.0))


# ------------------------------------------------------------------- runs without a folder
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


def comparison_runs(config: Mapping[str, Any]) -> dict[str, RunConfig]:
    """The runs an experiment compares: label -> :class:`RunConfig`, each validated.

    ``config`` is an experiment preset: its top level is the base run, and
    ``experiment.learners`` maps a label to ``{learner: NAME, hyperparameters: {...}}`` and,
    optionally, ``env_kwargs: {...}`` merged into the base run's (e.g. ``{stream: true}``).
    Each learner gets the base run's hyper-parameters that its constructor takes (BPTT has no
    λ), then its own, which must all be valid for it.
    """
    base = RunConfig.from_mapping({k: v for k, v in config.items() if k != "experiment"})
    runs = {}
    for label, entry in config["experiment"]["learners"].items():
        where = f"experiment.learners.{label}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with a `learner:` key, got {entry!r}")
        check_keys(
            where, entry, ("learner", "hyperparameters", "env_kwargs"), required=("learner",)
        )
        accepted = hp.hyperparameters_of(learner_class(entry["learner"]))
        shared = {k: v for k, v in base.hyperparameters.items() if k in accepted}
        own = dict(entry.get("hyperparameters") or {})
        run = base.derive(learner=entry["learner"], env_kwargs=entry.get("env_kwargs"))
        env_arguments(run.env, run.env_kwargs)
        runs[str(label)] = dataclasses.replace(run, hyperparameters={**shared, **own}).resolved()
    return runs


def run_comparison(
    config: Mapping[str, Any],
    seeds: Sequence[int],
    cell: Any,
    *,
    workers: int,
    progress: bool,
    desc: str,
) -> tuple[dict[str, RunConfig], dict[str, list[Any]]]:
    """Run ``cell`` (a picklable function of ``{"config": run dict}``) for every learner of a
    comparison preset and every seed, in parallel.

    Returns:
        (the runs, label -> :class:`RunConfig`; the results, label -> one result per seed).
    """
    runs = comparison_runs(config)
    keys = [(label, seed) for label in runs for seed in seeds]
    cells = [{"config": runs[label].derive(seed=seed).to_dict()} for label, seed in keys]
    results: dict[str, list[Any]] = {label: [] for label in runs}
    outputs = run_cells(cell, cells, workers=workers, progress=progress, desc=desc)
    for (label, _), output in zip(keys, outputs, strict=True):
        results[label].append(output)
    return runs, results
