"""Shared machinery of the streaming sequence tasks: one batch builder, a single and a vector env.

A task is a :class:`SequenceSource`: its sizes, loss and scoring, how the random numbers of ONE
sequence are drawn from a generator (:meth:`SequenceSource.draw`) and how a batch of B sequences
is built from B such draws, vectorised (:meth:`SequenceSource.build`). Both front ends use it the
same way:

- :class:`SequenceEnv` (``gym.make``) draws one sequence from ``self.np_random`` and builds a
  batch of one;
- :class:`SequenceVectorEnv` (``gym.make_vec``) draws one sequence from each sub-env's own
  generator, in the same order, and builds a batch of B.

So the vector env streams exactly what a ``SyncVectorEnv`` of single envs streams, while each of
its steps only indexes the precomputed ``(T, B, n)`` arrays and evaluates the loss on a
``(B, n_out)`` block (:class:`SequenceStepper`, shared by both front ends).

The task side (:class:`SequenceBatch`, :class:`SequenceSource`, :class:`SequenceStepper`) lives in
:mod:`bpl_envs.sequence_source` and is re-exported here, the home of everything a task module
subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from bpl_envs.checks import check_bool, check_int
from bpl_envs.sequence_source import (
    SequenceBatch,
    SequenceSource,
    SequenceStepper,
    check_option_names,
)
from bpl_envs.task_spec import TaskSpec

__all__ = [
    "SequenceBatch",
    "SequenceEnv",
    "SequenceSource",
    "SequenceStepper",
    "SequenceVectorEnv",
    "as_prediction",
    "check_option_names",
    "prediction_space",
]

SourceT = TypeVar("SourceT", bound=SequenceSource)
"""The task source an env streams; subclasses name theirs: ``SequenceEnv[ImageSequences]``."""

RENDER_MODES = ["ansi", "rgb_array"]
RENDER_FPS = 4


def prediction_space(output_size: int) -> spaces.Box:
    """The action space of every task: ``Box(-1, 1, (output_size,), float32)``.

    The bounds are nominal (Stable-Baselines3's checker warns for any other Box): the action is
    the learner's prediction (logits or values) and any finite floating value is scored as is.
    """
    return spaces.Box(-1.0, 1.0, (output_size,), np.float32)


def as_prediction(action: Any, shape: tuple[int, ...], name: str = "action") -> np.ndarray:
    """Validate a prediction and return it as float64, unchanged in value and shape.

    Args:
        action: array-like of a floating dtype with shape exactly ``shape``.
        shape: the required shape, ``(output_size,)`` or ``(num_envs, output_size)``.
        name: what to call the argument in error messages.

    Raises:
        TypeError: the dtype is not floating (ints and bools are not predictions).
        ValueError: the shape differs from ``shape`` or an entry is NaN or infinite.
    """
    array = np.asarray(action)
    if array.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating array (the prediction: logits or values), got dtype "
            f"{array.dtype}"
        )
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(
            f"{name} must be finite, got {array.size - int(finite.sum())} NaN or inf entries"
        )
    return array.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# The two front ends
# ---------------------------------------------------------------------------------------------


def _check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
    return render_mode


def _stepper_to_render(
    render_mode: str | None, stepper: SequenceStepper | None
) -> tuple[SequenceStepper, str] | None:
    """The stepper ``render()`` draws from and the render mode; None (with Gymnasium's warning)
    without a render mode; ResetNeeded before the first reset."""
    if render_mode is None:
        gym.logger.warn(
            "render() was called without a render mode; create the env with render_mode='ansi' "
            "or 'rgb_array'"
        )
        return None
    if stepper is None:
        raise ResetNeeded("call reset() before render()")
    return stepper, render_mode


def _python_scalar(value: np.ndarray) -> Any:
    """Element 0 of a ``(1, ...)`` info array: a python scalar, or an array for vector entries."""
    return value[0].item() if value.ndim == 1 else value[0]


class SequenceEnv(gym.Env[np.ndarray, np.ndarray], Generic[SourceT]):
    """One sequence at a time, one token per :meth:`step` (the B = 1 case of the shared code).

    Subclasses pass their :class:`SequenceSource`; the task modules document the behaviour.
    With ``stream=True`` the env never terminates: the step that answers a sequence's last token
    draws the next sequence at once, returns its first token and marks the boundary with
    ``info["sequence_end"]=True``. ``render_mode="ansi"`` renders the sequence as text,
    ``"rgb_array"`` as a uint8 ``(H, W, 3)`` heat map (:mod:`bpl_envs.rendering`).
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": RENDER_FPS}

    def __init__(self, source: SourceT, render_mode: str | None = None, stream: bool = False):
        self.render_mode = _check_render_mode(render_mode)
        self.stream = check_bool("stream", stream)
        self._source = source
        self.observation_space = source.observation_space
        self.action_space = prediction_space(source.output_size)
        self._stepper: SequenceStepper | None = None
        self._draw: Any = None  # the current sequence's draw (stream=True continues it)

    @property
    def task(self) -> TaskSpec:
        """The :class:`TaskSpec` of the current sequence (before any reset: of the next one)."""
        if self._stepper is None:
            return self._source.task_spec()
        return self._source.task_spec(self._stepper.batch.sequence_length)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new sequence; returns its first token ``(input_size,)`` and an empty info."""
        self._source.set_options({} if options is None else options)
        super().reset(seed=seed)
        return self._start_sequence().observation()[0], {}

    def _start_sequence(self, continue_stream: bool = False) -> SequenceStepper:
        if continue_stream:
            self._draw = self._source.next_draw(self._draw, self.np_random)
        else:
            self._draw = self._source.draw(self.np_random)
        batch = self._source.build([self._draw])
        self._stepper = SequenceStepper(self._source, batch, self.render_mode is not None)
        return self._stepper

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the prediction ``action`` for the current token and move to the next one."""
        if self._stepper is None:
            raise ResetNeeded("call reset() before step()")
        prediction = as_prediction(action, (self._source.output_size,))
        observations, rewards, terminated, info = self._stepper.step(prediction[None])
        info = {key: _python_scalar(value) for key, value in info.items()}
        if terminated and self.stream:
            observations = self._start_sequence(continue_stream=True).observation()
            terminated = False
        return observations[0], float(rewards[0]), terminated, False, info

    def render(self) -> str | np.ndarray | None:
        """The current sequence, its targets and the predictions so far: text with
        ``render_mode="ansi"``, a uint8 ``(H, W, 3)`` image with ``"rgb_array"``."""
        drawing = _stepper_to_render(self.render_mode, self._stepper)
        if drawing is None:
            return None
        stepper, render_mode = drawing
        return stepper.render(0, render_mode)


class SequenceVectorEnv(VectorEnv, Generic[SourceT]):
    """B sequences in lock-step, natively batched; the stream of ``SyncVectorEnv`` of singles.

    Sub-env i has its own generator (``np_random[i]``), seeded like the i-th env of a
    ``SyncVectorEnv``: ``reset(seed=s)`` seeds it with ``s + i``, a list of seeds seeds each one
    (``None`` keeps the generator). All sub-envs share the sequence length, so they terminate
    on the same step; partial resets (``options["reset_mask"]``) are therefore not supported.
    With ``stream=True`` no sub-env ever terminates (so ``autoreset_mode`` never comes into
    play): the step that answers the last tokens starts the next B sequences at once, as
    ``SyncVectorEnv`` of single ``stream=True`` envs does, with ``infos["sequence_end"]`` True.
    """

    metadata = {
        "render_modes": RENDER_MODES,
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int,
        source: SourceT,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        self.num_envs = check_int("num_envs", num_envs, minimum=1)
        self.stream = check_bool("stream", stream)
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode must be one of {[mode.value for mode in AutoresetMode]} "
                f"(or an AutoresetMode), got {autoreset_mode!r}"
            ) from None
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = _check_render_mode(render_mode)
        self._source = source
        self.single_observation_space = source.observation_space
        self.single_action_space = prediction_space(source.output_size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._generators: list[np.random.Generator | None] = [None] * self.num_envs
        self._seeds: list[int | None] = [None] * self.num_envs
        self._stepper: SequenceStepper | None = None
        self._draws: list[Any] = []  # each sub-env's current draw (stream=True continues them)
        self._autoreset_pending = False

    @property
    def task(self) -> TaskSpec:
        """The :class:`TaskSpec` of the current sequences (before any reset: of the next ones)."""
        if self._stepper is None:
            return self._source.task_spec()
        return self._source.task_spec(self._stepper.batch.sequence_length)

    # A tuple per sub-env where VectorEnv declares one value, as Gymnasium's SyncVectorEnv does.
    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """The generator of each sub-env (created from a random seed on first use)."""
        return tuple(self._generator(i) for i in range(self.num_envs))

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """The seed of each sub-env's generator."""
        return tuple(self._seed(i) for i in range(self.num_envs))

    def _generator(self, i: int) -> np.random.Generator:
        generator = self._generators[i]
        if generator is None:
            generator, self._seeds[i] = seeding.np_random()
            self._generators[i] = generator
        return generator

    def _seed(self, i: int) -> int:
        self._generator(i)
        seed = self._seeds[i]
        assert seed is not None  # set together with the generator
        return seed

    def _sub_env_seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int) and not isinstance(seed, bool):
            return [seed + i for i in range(self.num_envs)]
        if isinstance(seed, Sequence) and not isinstance(seed, str):
            if len(seed) != self.num_envs:
                raise ValueError(
                    f"seed as a list must have num_envs={self.num_envs} entries, got {len(seed)}"
                )
            return list(seed)
        raise TypeError(f"seed must be None, an int or a list of num_envs ints/None, got {seed!r}")

    def _start_batch(self, continue_stream: bool = False) -> SequenceStepper:
        generators = self.np_random
        if continue_stream:
            next_draw = self._source.next_draw
            draws = [next_draw(*pair) for pair in zip(self._draws, generators, strict=True)]
        else:
            draw = self._source.draw
            draws = [draw(rng) for rng in generators]
        self._draws = draws
        batch = self._source.build(draws)
        self._stepper = SequenceStepper(self._source, batch, self.render_mode is not None)
        self._autoreset_pending = False
        return self._stepper

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start B new sequences; returns their first tokens ``(B, input_size)`` and ``{}``."""
        seeds = self._sub_env_seeds(seed)
        options = {} if options is None else options
        if isinstance(options, Mapping) and "reset_mask" in options:
            raise ValueError(
                "options['reset_mask'] (a partial reset) is not supported: all sub-envs run in "
                "lock-step and are reset together; call reset() without a reset_mask"
            )
        self._source.set_options(options)
        for i, sub_env_seed in enumerate(seeds):
            if sub_env_seed is not None:
                self._generators[i], self._seeds[i] = seeding.np_random(sub_env_seed)
        return self._start_batch().observation(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Score the predictions ``actions`` ``(B, output_size)`` for the current tokens.

        Returns ``(observations (B, input_size) float32, rewards (B,) float64, terminations
        (B,) bool, truncations (B,) bool, infos)`` with infos batched as ``SyncVectorEnv``
        batches them (each key with its ``_key`` mask). Autoreset follows ``autoreset_mode``.
        """
        if self._stepper is None:
            raise ResetNeeded("call reset() before step()")
        predictions = as_prediction(actions, (self.num_envs, self._source.output_size), "actions")
        no = np.zeros(self.num_envs, dtype=bool)
        if self._autoreset_pending:
            observations = self._start_batch().observation()
            return observations, np.zeros(self.num_envs), no, no.copy(), {}
        observations, rewards, terminated, info = self._stepper.step(predictions)
        infos = self._batched_info(info)
        if terminated and self.stream:
            observations = self._start_batch(continue_stream=True).observation()
            terminated = False
        elif terminated and self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset_pending = True
        elif terminated and self.autoreset_mode == AutoresetMode.SAME_STEP:
            final_observations = np.empty(self.num_envs, dtype=object)
            for i in range(self.num_envs):  # once per sequence, not per step
                final_observations[i] = observations[i]
            infos = self._batched_info({"final_obs": final_observations, "final_info": infos})
            observations = self._start_batch().observation()
        return observations, rewards, np.full(self.num_envs, terminated), no, infos

    def _batched_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Every entry present for every sub-env: add an all-True ``_key`` mask after each key."""
        batched, present = {}, np.ones(self.num_envs, dtype=bool)
        for key, value in info.items():
            batched[key] = value
            batched[f"_{key}"] = present.copy()
        return batched

    def render(self) -> tuple[str | np.ndarray, ...] | None:
        """One text (``"ansi"``) or uint8 ``(H, W, 3)`` image (``"rgb_array"``) per sub-env,
        showing its current sequence, as ``SyncVectorEnv`` returns them."""
        drawing = _stepper_to_render(self.render_mode, self._stepper)
        if drawing is None:
            return None
        stepper, render_mode = drawing
        return tuple(stepper.render(i, render_mode) for i in range(self.num_envs))
