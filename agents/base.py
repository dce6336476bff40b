"""What every learner shares: the Stable-Baselines3-shaped plumbing around a learning loop.

A learner subclasses :class:`BaseLearner` and provides three things:

- ``_run_episode()``: run one episode (TD(lambda)) or one batch of sequences (the recurrent
  learners), calling ``self._on_env_step(n, episode_done)`` after every ``env.step`` with the
  number of transitions it produced (the batch size of a vector env) and whether the episode
  ended; return False to stop early.
- ``_hyperparameters()``: the constructor's keyword arguments (plain data), saved in checkpoints.
- ``_get_state()`` / ``_set_state(state)``: everything learned (tensors and plain data).

In return it gets ``learn`` (budgets in timesteps or episodes, SB3 callbacks, a tqdm progress
bar), a ``logger`` from :mod:`stable_baselines3.common.logger`, ``num_timesteps``, and
``save`` / ``load`` checkpoints that also hold the env's random state, so that a run continued
from a checkpoint taken between episodes produces exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import os
import pathlib
import sys
from abc import ABC, abstractmethod
from typing import IO, Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger
from tqdm.auto import tqdm

from bpl_envs.checks import check_int, check_optional_int

__all__ = ["BaseLearner", "CheckpointError", "EnvLike", "make_env"]

EnvLike = gym.Env | gym.vector.VectorEnv
"""A single Gymnasium env or a vector env (learners say which kinds they accept)."""

LearnerT = TypeVar("LearnerT", bound="BaseLearner")

CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = (
    "format",
    "class",
    "hyperparameters",
    "rebuild",
    "state",
    "num_timesteps",
    "num_episodes",
    "next_reset_seed",
    "env_random_state",
)


class CheckpointError(ValueError):
    """A file given to ``load`` is not a usable checkpoint of this learner (the message names the
    file and says what is wrong with it)."""


def make_env(env: str | EnvLike, n_envs: int = 1) -> EnvLike:
    """Turn an env id into an env: ``gym.make`` for one env, ``gym.make_vec`` for several.

    Envs that are already built are returned unchanged. ``bpl/...`` ids need :mod:`bpl_envs`,
    which this imports.
    """
    import bpl_envs  # noqa: F401  (registers the bpl/ ids)

    if isinstance(env, str):
        check_int("n_envs", n_envs, minimum=1)
        if env not in gym.registry:
            known = sorted(k for k in gym.registry if k.startswith("bpl/"))
            raise ValueError(f"unknown env id {env!r}; registered bpl ids: {known}")
        return gym.make(env) if n_envs == 1 else gym.make_vec(env, num_envs=n_envs)
    if isinstance(env, gym.Env | gym.vector.VectorEnv):
        return env
    raise TypeError(
        f"env must be an env id (str), a gymnasium.Env or a gymnasium.vector.VectorEnv, "
        f"got {type(env).__name__}"
    )


def _default_logger(verbose: int) -> Logger:
    """SB3's logger printing to stdout when verbose, silent otherwise (no temp folders)."""
    formats: list[KVWriter] = [HumanOutputFormat(sys.stdout)] if verbose >= 1 else []
    return Logger(folder=None, output_formats=formats)


def _env_random_state(env: EnvLike) -> dict[str, Any] | None:
    """The numpy random state of an env (single or vector) and its curriculum, as plain data."""
    try:
        generators = _generator_tuple(env)
    except AttributeError:
        return None
    state: dict[str, Any] = {"np_random": [g.bit_generator.state for g in generators]}
    curriculum = _find_attr(env, "curriculum")
    if curriculum is not None and hasattr(curriculum, "state_dict"):
        state["curriculum"] = curriculum.state_dict()
    return state


def _restore_env_random_state(env: EnvLike, state: dict[str, Any]) -> None:
    generators = _generator_tuple(env)
    if len(generators) != len(state["np_random"]):
        raise ValueError(
            f"the checkpoint holds the random state of {len(state['np_random'])} envs but the "
            f"env given has {len(generators)}: pass an env with {len(state['np_random'])} "
            "sub-envs to continue exactly, or load without an env (load(path)) and call "
            "set_env(env) to go on with a fresh env of any size"
        )
    for generator, saved in zip(generators, state["np_random"], strict=True):
        generator.bit_generator.state = saved
    if "curriculum" in state:
        _find_attr(env, "curriculum").load_state_dict(state["curriculum"])


def _generator_tuple(env: EnvLike) -> tuple[np.random.Generator, ...]:
    """The env's generators: one for a single env, one per sub-env (or a shared one) for a
    vector env, whose ``np_random`` is a tuple (SyncVectorEnv, the bpl/ vector envs)."""
    generators: np.random.Generator | tuple[np.random.Generator, ...] = env.np_random
    return (generators,) if isinstance(generators, np.random.Generator) else tuple(generators)


def _read_checkpoint(path: pathlib.Path | IO[bytes], class_name: str) -> dict[str, Any]:
    """The checkpoint dict in ``path``, loaded without executing code (``weights_only``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is empty, truncated, not a checkpoint, of another learner
            class or of another checkpoint format (the message names the file and the problem).
    """
    where = path if isinstance(path, pathlib.Path) else "the checkpoint stream"
    if isinstance(path, pathlib.Path):
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path} is empty: it is not a {class_name} checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(
            f"cannot read {where} as a {class_name} checkpoint: the file is truncated, "
            f"corrupted or not a checkpoint written by save() ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'})"
        ) from error
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in _CHECKPOINT_KEYS):
        raise CheckpointError(
            f"{where} holds a {type(checkpoint).__name__}, not a bp-lambda "
            f"learner checkpoint (a dict with keys {list(_CHECKPOINT_KEYS)})"
        )
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{where} has checkpoint format {checkpoint['format']!r}; this "
            f"version of bp-lambda reads format {CHECKPOINT_FORMAT}"
        )
    if checkpoint["class"] != class_name:
        raise CheckpointError(
            f"{where} is a {checkpoint['class']!r} checkpoint, not a "
            f"{class_name} one: load it with {checkpoint['class']}.load"
        )
    return checkpoint


def _find_attr(env: EnvLike, name: str) -> Any:
    """``getattr`` that also looks through Gymnasium wrappers; None when absent."""
    try:
        return env.get_wrapper_attr(name)  # type: ignore[union-attr]  # else AttributeError
    except AttributeError:
        return getattr(env, name, None)


class BaseLearner(ABC):
    """Learner plumbing shaped like Stable-Baselines3's ``BaseAlgorithm``.

    Args:
        env: the environment (subclasses say which kinds they accept), or None when a learner is
            rebuilt by :meth:`load` without one (``predict`` works, ``learn`` needs ``set_env``).
        seed: seeds parameter initialisation (without touching torch's global generator) and the
            env's first reset. None draws fresh randomness.
        verbose: 0 silent, 1 logs to stdout.
    """

    def __init__(
        self, env: str | EnvLike | None, *, seed: int | None = None, verbose: int = 0
    ) -> None:
        seed = check_optional_int("seed", seed)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.seed = seed
        self.verbose = verbose
        self.num_timesteps = 0
        self.num_episodes = 0
        self._logger = _default_logger(verbose)
        self._next_reset_seed: int | None = seed
        self.env: Any = None  # an EnvLike once set; Any: subclasses know which kind they hold
        if env is not None:
            self.set_env(env)

    # ------------------------------------------------------------------ SB3-shaped accessors
    @property
    def logger(self) -> Logger:
        """The :class:`stable_baselines3.common.logger.Logger` that ``learn`` records to."""
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Replace the logger (e.g. ``stable_baselines3.common.logger.configure(dir, formats)``)."""
        if not isinstance(logger, Logger):
            raise TypeError(f"logger must be a stable_baselines3 Logger, got {type(logger)}")
        self._logger = logger

    def get_env(self) -> Any:
        """The env ``learn`` runs on (None if the learner has none)."""
        return self.env

    def set_env(self, env: str | EnvLike) -> None:
        """Attach an env (subclasses build it from an id and check that its spaces fit)."""
        self.env = env

    def get_vec_normalize_env(self) -> None:
        """SB3 callbacks ask for it; our learners never normalise observations."""
        return None

    # ------------------------------------------------------------------------ the learn loop
    def learn(
        self: LearnerT,
        total_timesteps: int | None = None,
        *,
        episodes: int | None = None,
        callback: BaseCallback | list[BaseCallback] | None = None,
        log_interval: int = 1,
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> LearnerT:
        """Learn for ``total_timesteps`` env transitions or for ``episodes`` episodes.

        Exactly one budget must be given. A transition is one env step of one sub-env, so a
        vector env of B sequences advancing one token counts B (as in SB3). An episode is one
        episode of a single env or one batch of sequences of a vector env; the budget in
        timesteps is checked between episodes, so the last episode is always completed.

        Args:
            total_timesteps: budget in transitions (counted from 0 unless
                ``reset_num_timesteps=False``, in which case it is added to what was done).
            episodes: budget in episodes / batches of sequences.
            callback: an SB3 callback, a list of them, or None.
            log_interval: dump the logger every this many episodes (0: never).
            progress_bar: show a tqdm bar.
            reset_num_timesteps: start counting from 0 (False continues a run).

        Returns:
            self.
        """
        if (total_timesteps is None) == (episodes is None):
            raise ValueError("give exactly one budget: total_timesteps=... or episodes=...")
        budget_name, budget = (
            ("total_timesteps", total_timesteps) if episodes is None else ("episodes", episodes)
        )
        budget = check_int(budget_name, budget, minimum=0)
        log_interval = check_int("log_interval", log_interval, minimum=0)
        if self.env is None:
            raise RuntimeError("this learner has no env; call set_env(env) or load(path, env=env)")
        if reset_num_timesteps:
            self.num_timesteps = 0
            self.num_episodes = 0
        if episodes is None:
            start = 0 if reset_num_timesteps else self.num_timesteps
            total_timesteps = start + budget

            def done() -> bool:
                return self.num_timesteps >= total_timesteps

            progress_total, progress_unit = total_timesteps - self.num_timesteps, "step"
        else:
            target_episodes = self.num_episodes + budget

            def done() -> bool:
                return self.num_episodes >= target_episodes

            progress_total, progress_unit = budget, "episode"

        self._callback = self._make_callback(callback)
        self._progress: tqdm | None = (
            tqdm(total=progress_total, unit=progress_unit, dynamic_ncols=True, leave=False)
            if progress_bar
            else None
        )
        self._progress_counts_steps = episodes is None
        self._callback.on_training_start(locals(), globals())
        try:
            while not done():
                self._callback.on_rollout_start()
                keep_going = self._run_episode()
                self._callback.on_rollout_end()
                if self._progress is not None and not self._progress_counts_steps:
                    self._progress.update(1)
                if log_interval and self.num_episodes % log_interval == 0:
                    self._dump_logs()
                if not keep_going:
                    break
        finally:
            if self._progress is not None:
                self._progress.close()
        self._callback.on_training_end()
        return self

    def _make_callback(self, callback: BaseCallback | list[BaseCallback] | None) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        elif callback is None:
            callback = ConvertCallback(None)
        elif not isinstance(callback, BaseCallback):
            raise TypeError(
                f"callback must be an SB3 BaseCallback, a list of them or None, got {callback!r}"
            )
        callback.init_callback(self)  # type: ignore[arg-type]  # SB3-shaped
        return callback

    def _on_env_step(self, n_transitions: int, episode_done: bool = False) -> bool:
        """Count transitions (and the episode, on its last step), tick the progress bar and call
        the callback; False means stop.

        Learners call it after everything the step changes has been applied (on an episode's
        last step: after the episode's update), so callbacks such as SB3's CheckpointCallback
        see a consistent learner.
        """
        self.num_timesteps += n_transitions
        self.num_episodes += bool(episode_done)
        if self._progress is not None and self._progress_counts_steps:
            self._progress.update(n_transitions)
        return bool(self._callback.on_step())

    def _next_seed(self) -> int | None:
        """The seed for the env's next reset: the learner's seed once, then None (continue)."""
        seed, self._next_reset_seed = self._next_reset_seed, None
        return seed

    def _dump_logs(self) -> None:
        self.logger.record("time/episodes", self.num_episodes, exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    @abstractmethod
    def _run_episode(self) -> bool:
        """Run one episode / batch of sequences; return False to stop learning early."""

    # ----------------------------------------------------------------------- checkpoints
    @abstractmethod
    def _hyperparameters(self) -> dict[str, Any]:
        """Constructor keyword arguments (plain data) that rebuild this learner."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Everything learned: tensors and plain data (no arbitrary objects)."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_get_state`."""

    def _rebuild_kwargs(self) -> dict[str, Any]:
        """Extra data a subclass needs to be rebuilt without an env (e.g. the task's sizes)."""
        return {}

    def save(self, path: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write a checkpoint: hyper-parameters, learned state, counters and env random state.

        A checkpoint taken between episodes (e.g. from a callback's ``on_rollout_end``) lets
        :meth:`load` + ``learn(..., reset_num_timesteps=False)`` continue exactly.
        """
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "class": type(self).__name__,
            "hyperparameters": self._hyperparameters(),
            "rebuild": self._rebuild_kwargs(),
            "state": self._get_state(),
            "num_timesteps": self.num_timesteps,
            "num_episodes": self.num_episodes,
            "next_reset_seed": self._next_reset_seed,
            "env_random_state": None if self.env is None else _env_random_state(self.env),
        }
        if isinstance(path, str | os.PathLike):
            path = pathlib.Path(path)
            if path.suffix == "":
                path = path.with_suffix(".pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            # a temporary file renamed into place: an interrupted save keeps the previous file
            temporary = path.with_name(path.name + ".tmp")
            try:
                torch.save(checkpoint, temporary)
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        else:
            torch.save(checkpoint, path)

    @classmethod
    def load(
        cls: type[LearnerT],
        path: str | os.PathLike[str] | IO[bytes],
        env: str | EnvLike | None = None,
        **overrides: Any,
    ) -> LearnerT:
        """Rebuild a learner from :meth:`save`'s checkpoint.

        Args:
            path: the checkpoint (``.pt`` is added when the name has no suffix and no such
                file exists).
            env: the env to continue learning on (its random state is restored from the
                checkpoint when it has the same number of sub-envs); None for ``predict`` only.
            **overrides: constructor arguments that replace the saved ones, e.g.
                ``device="cuda"`` (and what a checkpoint cannot hold, such as a callable).
        """
        if isinstance(path, str | os.PathLike):
            path = pathlib.Path(path)
            if not path.exists() and path.suffix == "" and path.with_suffix(".pt").exists():
                path = path.with_suffix(".pt")
        checkpoint = _read_checkpoint(path, cls.__name__)
        unknown = sorted(set(overrides) - set(checkpoint["hyperparameters"]))
        if unknown:
            raise TypeError(
                f"unknown override(s) {unknown} for {cls.__name__}.load; choose from "
                f"{sorted(checkpoint['hyperparameters'])}"
            )
        kwargs = {**checkpoint["hyperparameters"], **overrides}
        learner = cls._from_checkpoint(env, kwargs, checkpoint["rebuild"], overrides)
        learner._set_state(checkpoint["state"])
        learner.num_timesteps = checkpoint["num_timesteps"]
        learner.num_episodes = checkpoint["num_episodes"]
        learner._next_reset_seed = checkpoint["next_reset_seed"]
        if env is not None and checkpoint["env_random_state"] is not None:
            _restore_env_random_state(learner.env, checkpoint["env_random_state"])
        return learner

    @classmethod
    def _from_checkpoint(
        cls: type[LearnerT],
        env: str | EnvLike | None,
        hyperparameters: dict[str, Any],
        rebuild: dict[str, Any],  # noqa: ARG003 (hook signature: subclasses use it)
        overrides: dict[str, Any],  # noqa: ARG003 (hook signature: TDLambda uses it)
    ) -> LearnerT:
        """Construct the learner for :meth:`load`: ``hyperparameters`` are the saved ones with
        ``overrides`` applied (subclasses that can live without an env use ``rebuild``)."""
        return cls(env, **hyperparameters)
