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
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from bpl_envs.checks import check_int
from bpl_envs.losses import get_loss
from bpl_envs.rendering import sequence_image
from bpl_envs.task_spec import TaskSpec

__all__ = [
    "ImageSequences",
    "SequenceBatch",
    "SequenceEnv",
    "SequenceSource",
    "SequenceStepper",
    "SequenceVectorEnv",
    "as_prediction",
    "check_fraction",
    "check_int",
    "check_option_names",
    "check_split",
    "check_stream",
    "prediction_space",
    "stratified_split",
]

RENDER_MODES = ["ansi", "rgb_array"]
RENDER_FPS = 4


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the task modules
# ---------------------------------------------------------------------------------------------


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float strictly between 0 and 1, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in (0, 1), got {value!r} ({type(value).__name__})")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def check_split(split: Any) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise a ValueError."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


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


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified train/test split of ``len(labels)`` items.

    For each class in increasing order, its indices are shuffled by one ``default_rng(seed)`` and
    the first ``round(test_fraction * n_class)`` go to the test split.

    Args:
        labels: int array ``(n,)``.
        test_fraction: fraction of each class held out, in (0, 1).
        seed: seed of the shuffle.

    Returns:
        ``(train_indices, test_indices)``, int64 arrays, each sorted increasingly.
    """
    rng = np.random.default_rng(seed)
    test = [
        rng.permutation(members)[: round(test_fraction * len(members))]
        for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    test_indices = np.sort(np.concatenate(test)).astype(np.int64)
    train_indices = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test_indices)
    if len(test_indices) == 0 or len(train_indices) == 0:
        raise ValueError(
            f"test_fraction={test_fraction} leaves an empty split of {len(labels)} items; "
            "choose a fraction that keeps both splits non-empty"
        )
    return train_indices, test_indices


# ---------------------------------------------------------------------------------------------
# A task: the dynamics shared by the single and the vector env
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceBatch:
    """B sequences of T tokens, stored time-major so that step t reads one contiguous block.

    Attributes:
        inputs: float32 ``(T, B, input_size)``, the tokens x_t.
        targets: float32 ``(T, B, output_size)``, the target y_t of each step.
        scored: bool ``(T,)``, which steps carry a loss (the same for every sequence).
    """

    inputs: np.ndarray
    targets: np.ndarray
    scored: np.ndarray

    @classmethod
    def from_batch_major(
        cls, inputs: np.ndarray, targets: np.ndarray, scored: np.ndarray
    ) -> SequenceBatch:
        """Build from ``(B, T, n)`` arrays (the natural layout of the task builders)."""
        return cls(
            inputs=np.ascontiguousarray(inputs.swapaxes(0, 1), dtype=np.float32),
            targets=np.ascontiguousarray(targets.swapaxes(0, 1), dtype=np.float32),
            scored=np.asarray(scored, dtype=bool),
        )

    @property
    def sequence_length(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[1]


class SequenceSource(ABC):
    """The dynamics of one task, shared by its single and vector envs.

    Subclasses set ``input_size``, ``output_size``, ``loss`` (a name in
    :data:`bpl_envs.losses.LOSSES`), ``scoring`` (``"last"``, ``"all"`` or ``"window"``) and
    ``observation_space``, and implement :meth:`draw`, :meth:`build`, :meth:`render` and the
    :attr:`sequence_length` of the next sequences.
    """

    input_size: int
    output_size: int
    loss: str
    scoring: str
    observation_space: spaces.Box
    reset_option_names: tuple[str, ...] = ()

    @property
    @abstractmethod
    def sequence_length(self) -> int:
        """Number of tokens T of the sequences the next :meth:`build` makes."""

    @abstractmethod
    def draw(self, rng: np.random.Generator) -> Any:
        """Draw the random numbers of one sequence from ``rng`` (the only source of randomness)."""

    @abstractmethod
    def build(self, draws: Sequence[Any]) -> SequenceBatch:
        """Build the batch of ``len(draws)`` sequences, vectorised, from their draws."""

    @abstractmethod
    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        """Text showing sequence ``index`` of ``batch`` when ``t`` tokens have been answered.

        ``predictions`` is float64 ``(T, B, output_size)`` (NaN where none was received yet).
        """

    def render_image(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> np.ndarray:
        """The same as an RGB image, uint8 ``(H, W, 3)``: :func:`bpl_envs.rendering.sequence_image`
        of sequence ``index`` (inputs, targets and predictions as heat maps over time)."""
        return sequence_image(
            batch.inputs[:, index],
            batch.targets[:, index],
            batch.scored,
            None if predictions is None else predictions[:, index],
            t,
            self.loss,
            self.observation_space.low,
            self.observation_space.high,
        )

    def task_spec(self, sequence_length: int | None = None) -> TaskSpec:
        """The :class:`TaskSpec` of sequences of ``sequence_length`` (default: the next ones)."""
        return TaskSpec(
            input_size=self.input_size,
            output_size=self.output_size,
            loss=self.loss,
            scoring=self.scoring,
            sequence_length=self.sequence_length if sequence_length is None else sequence_length,
        )

    def set_options(self, options: Mapping[str, Any]) -> None:
        """Apply ``reset(options=...)`` to the next sequences; unknown keys raise a ValueError.

        Subclasses that accept options validate all of them before changing anything.
        """
        check_option_names(options, self.reset_option_names)

    def step_info(
        self, t: int, predictions: np.ndarray, batch: SequenceBatch
    ) -> dict[str, np.ndarray]:
        """Task-specific info entries for step ``t``, each an array ``(B, ...)``; none by default.

        ``predictions`` is the float64 ``(B, output_size)`` block received at step t.
        """
        return {}

    def end_of_batch_info(self, mean_loss: float) -> dict[str, bool | int | float]:
        """Called once when a batch ends, with the mean loss per scored (step, sequence) in nats.

        Returns info entries for the terminal step (python scalars); none by default.
        """
        return {}


def check_option_names(options: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise a ValueError listing the allowed names if ``options`` has any other key."""
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = f"the allowed ones are {sorted(allowed)}" if allowed else "this env takes none"
        raise ValueError(f"unknown reset option(s) {unknown}; {accepted}")


# ---------------------------------------------------------------------------------------------
# Stepping a batch in lock-step: the per-step work of both front ends
# ---------------------------------------------------------------------------------------------


class SequenceStepper:
    """Streams the B sequences of one :class:`SequenceBatch` token by token.

    Per step it only indexes the batch arrays and evaluates the loss on ``(B, output_size)``.
    The loss is computed in float64 from the prediction as received.
    """

    def __init__(self, source: SequenceSource, batch: SequenceBatch, keep_predictions: bool):
        self.source = source
        self.batch = batch
        self.t = 0
        self._loss = get_loss(source.loss).value
        self._loss_sum = 0.0
        self._loss_count = 0
        shape = (batch.sequence_length, batch.batch_size, source.output_size)
        self.predictions = np.full(shape, np.nan) if keep_predictions else None

    @property
    def done(self) -> bool:
        """True once the last token has been answered."""
        return self.t == self.batch.sequence_length

    def observation(self) -> np.ndarray:
        """The current tokens x_t, a float32 copy ``(B, input_size)``."""
        return self.batch.inputs[self.t].copy()

    def step(
        self, predictions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, bool, dict[str, np.ndarray]]:
        """Score ``predictions`` (float64 ``(B, output_size)``) for the current token.

        Returns:
            ``(next_observations (B, input_size) float32, rewards (B,) float64, terminated,
            info)`` where every info value is an array ``(B, ...)``: ``target`` float32,
            ``scored`` bool, ``loss`` float64, ``sequence_end`` bool (True on the last token),
            the task's :meth:`SequenceSource.step_info` and, on the last step, its
            :meth:`SequenceSource.end_of_batch_info` (broadcast).
            After the last token the observation is all zeros.
        """
        if self.done:
            raise ResetNeeded("the sequence has ended (terminated=True): call reset() first")
        t, batch = self.t, self.batch
        scored = bool(batch.scored[t])
        if scored:
            targets = batch.targets[t].astype(np.float64)
            loss = np.asarray(self._loss(predictions, targets), dtype=np.float64)
            rewards = -loss
            self._loss_sum += float(loss.sum())
            self._loss_count += loss.size
        else:
            loss = np.zeros(batch.batch_size)
            rewards = np.zeros(batch.batch_size)
        if self.predictions is not None:
            self.predictions[t] = predictions
        info = {
            "target": batch.targets[t].copy(),
            "scored": np.full(batch.batch_size, scored),
            "loss": loss,
            "sequence_end": np.full(batch.batch_size, t == batch.sequence_length - 1),
            **self.source.step_info(t, predictions, batch),
        }
        self.t += 1
        if not self.done:
            return self.observation(), rewards, False, info
        mean_loss = self._loss_sum / self._loss_count if self._loss_count else 0.0
        for key, value in self.source.end_of_batch_info(mean_loss).items():
            info[key] = np.full(batch.batch_size, value)
        observation = np.zeros((batch.batch_size, self.source.input_size), np.float32)
        return observation, rewards, True, info

    def render(self, index: int, render_mode: str) -> str | np.ndarray:
        """Sequence ``index`` as text (``"ansi"``) or as an RGB image (``"rgb_array"``)."""
        draw = self.source.render if render_mode == "ansi" else self.source.render_image
        return draw(self.batch, index, self.t, self.predictions)


# ---------------------------------------------------------------------------------------------
# The two front ends
# ---------------------------------------------------------------------------------------------


def _check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
    return render_mode


def _stepper_to_render(
    render_mode: str | None, stepper: SequenceStepper | None
) -> SequenceStepper | None:
    """The stepper ``render()`` draws from; None (with Gymnasium's warning) without a render
    mode; ResetNeeded before the first reset."""
    if render_mode is None:
        gym.logger.warn(
            "render() was called without a render mode; create the env with render_mode='ansi' "
            "or 'rgb_array'"
        )
        return None
    if stepper is None:
        raise ResetNeeded("call reset() before render()")
    return stepper


def check_stream(stream: Any) -> bool:
    """Return ``stream`` if it is a bool, else raise a TypeError."""
    if not isinstance(stream, bool | np.bool_):
        raise TypeError(f"stream must be True or False, got {stream!r} ({type(stream).__name__})")
    return bool(stream)


def _python_scalar(value: np.ndarray) -> Any:
    """Element 0 of a ``(1, ...)`` info array: a python scalar, or an array for vector entries."""
    return value[0].item() if value.ndim == 1 else value[0]


class SequenceEnv(gym.Env[np.ndarray, np.ndarray]):
    """One sequence at a time, one token per :meth:`step` (the B = 1 case of the shared code).

    Subclasses pass their :class:`SequenceSource`; the task modules document the behaviour.
    With ``stream=True`` the env never terminates: the step that answers a sequence's last token
    draws the next sequence at once, returns its first token and marks the boundary with
    ``info["sequence_end"]=True``. ``render_mode="ansi"`` renders the sequence as text,
    ``"rgb_array"`` as a uint8 ``(H, W, 3)`` heat map (:mod:`bpl_envs.rendering`).
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": RENDER_FPS}

    def __init__(
        self, source: SequenceSource, render_mode: str | None = None, stream: bool = False
    ):
        self.render_mode = _check_render_mode(render_mode)
        self.stream = check_stream(stream)
        self._source = source
        self.observation_space = source.observation_space
        self.action_space = prediction_space(source.output_size)
        self._stepper: SequenceStepper | None = None

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
        self._start_sequence()
        return self._stepper.observation()[0], {}

    def _start_sequence(self) -> None:
        batch = self._source.build([self._source.draw(self.np_random)])
        self._stepper = SequenceStepper(self._source, batch, self.render_mode is not None)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the prediction ``action`` for the current token and move to the next one."""
        if self._stepper is None:
            raise ResetNeeded("call reset() before step()")
        prediction = as_prediction(action, self.action_space.shape)
        observations, rewards, terminated, info = self._stepper.step(prediction[None])
        info = {key: _python_scalar(value) for key, value in info.items()}
        if terminated and self.stream:
            self._start_sequence()
            observations, terminated = self._stepper.observation(), False
        return observations[0], float(rewards[0]), terminated, False, info

    def render(self) -> str | np.ndarray | None:
        """The current sequence, its targets and the predictions so far: text with
        ``render_mode="ansi"``, a uint8 ``(H, W, 3)`` image with ``"rgb_array"``."""
        stepper = _stepper_to_render(self.render_mode, self._stepper)
        return None if stepper is None else stepper.render(0, self.render_mode)


class SequenceVectorEnv(VectorEnv):
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
        source: SequenceSource,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        self.num_envs = check_int("num_envs", num_envs, minimum=1)
        self.stream = check_stream(stream)
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
        self._autoreset_pending = False

    @property
    def task(self) -> TaskSpec:
        """The :class:`TaskSpec` of the current sequences (before any reset: of the next ones)."""
        if self._stepper is None:
            return self._source.task_spec()
        return self._source.task_spec(self._stepper.batch.sequence_length)

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The generator of each sub-env (created from a random seed on first use)."""
        if None in self._generators:
            for i in range(self.num_envs):
                self._generator(i)
        return tuple(self._generators)

    @property
    def np_random_seed(self) -> tuple[int, ...]:
        """The seed of each sub-env's generator."""
        for i in range(self.num_envs):
            self._generator(i)
        return tuple(self._seeds)

    def _generator(self, i: int) -> np.random.Generator:
        if self._generators[i] is None:
            self._generators[i], self._seeds[i] = seeding.np_random()
        return self._generators[i]

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
        raise TypeError(
            f"seed must be None, an int or a list of num_envs ints/None, got {seed!r}"
        )

    def _start_batch(self) -> None:
        draw = self._source.draw
        draws = [draw(rng) for rng in self.np_random]
        batch = self._source.build(draws)
        self._stepper = SequenceStepper(self._source, batch, self.render_mode is not None)
        self._autoreset_pending = False

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
        self._start_batch()
        return self._stepper.observation(), {}

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
            self._start_batch()
            return self._stepper.observation(), np.zeros(self.num_envs), no, no.copy(), {}
        observations, rewards, terminated, info = self._stepper.step(predictions)
        infos = self._batched_info(info)
        if terminated and self.stream:
            self._start_batch()
            observations, terminated = self._stepper.observation(), False
        elif terminated and self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset_pending = True
        elif terminated and self.autoreset_mode == AutoresetMode.SAME_STEP:
            final_observations = np.empty(self.num_envs, dtype=object)
            for i in range(self.num_envs):  # once per sequence, not per step
                final_observations[i] = observations[i]
            infos = self._batched_info({"final_obs": final_observations, "final_info": infos})
            self._start_batch()
            observations = self._stepper.observation()
        return observations, rewards, np.full(self.num_envs, terminated), no, infos

    def _batched_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Every entry present for every sub-env: add an all-True ``_key`` mask after each key."""
        batched, present = {}, np.ones(self.num_envs, dtype=bool)
        for key, value in info.items():
            batched[key] = value
            batched[f"_{key}"] = present.copy()
        return batched

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """One text (``"ansi"``) or uint8 ``(H, W, 3)`` image (``"rgb_array"``) per sub-env,
        showing its current sequence, as ``SyncVectorEnv`` returns them."""
        stepper = _stepper_to_render(self.render_mode, self._stepper)
        if stepper is None:
            return None
        return tuple(stepper.render(i, self.render_mode) for i in range(self.num_envs))


# ---------------------------------------------------------------------------------------------
# Image classification fed token by token (sequential digits and MNIST)
# ---------------------------------------------------------------------------------------------

_SHADES = " .:-=+*#%@"


class ImageSequences(SequenceSource):
    """Classify an image read as a sequence of pixel tokens, cross-entropy at the last step.

    Each sequence is one image drawn uniformly at random, with replacement, by
    ``rng.integers(n)``. The image's pixels (optionally permuted) are cut into T tokens of
    ``token_size`` pixels each, scaled to [0, 1]. The target at every step is the one-hot label;
    only the last step is scored.

    Args:
        pixels: uint8 ``(n, H * W)``, row-major images.
        labels: int64 ``(n,)`` in ``[0, num_classes)``.
        image_shape: ``(H, W)``.
        max_value: the pixel value that maps to 1.0 (16 for digits, 255 for MNIST).
        token_size: pixels per token; ``H * W`` must be a multiple of it.
        permutation: int ``(H * W,)``; if given, token pixels are ``image_flat[permutation]``.
        name: the task's name, for :meth:`render`.
        num_classes: number of classes (the output size).
    """

    loss = "ce"
    scoring = "last"

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        *,
        image_shape: tuple[int, int],
        max_value: int,
        token_size: int,
        permutation: np.ndarray | None,
        name: str,
        num_classes: int = 10,
    ):
        self._pixels = pixels
        self._labels = labels
        self._image_shape = image_shape
        self._scale = np.float32(max_value)
        self._permutation = permutation
        self._name = name
        self.input_size = token_size
        self.output_size = num_classes
        self._length = image_shape[0] * image_shape[1] // token_size
        self.observation_space = spaces.Box(0.0, 1.0, (token_size,), np.float32)

    @property
    def sequence_length(self) -> int:
        return self._length

    @property
    def num_images(self) -> int:
        return len(self._labels)

    def tokens(self, indices: np.ndarray) -> np.ndarray:
        """The token sequences of images ``indices``: float32 ``(len(indices), T, token_size)``."""
        flat = self._pixels[indices]
        if self._permutation is not None:
            flat = flat[:, self._permutation]
        scaled = flat.astype(np.float32) / self._scale
        return scaled.reshape(len(indices), self._length, self.input_size)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in order: inputs float32 ``(n, T, token_size)``, labels int64 ``(n,)``.
        """
        return self.tokens(np.arange(self.num_images)), self._labels.copy()

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.num_images))

    def build(self, draws: Sequence[int]) -> SequenceBatch:
        indices = np.asarray(draws, dtype=np.int64)
        inputs = self.tokens(indices)
        one_hot = np.eye(self.output_size, dtype=np.float32)[self._labels[indices]]
        targets = np.broadcast_to(
            one_hot[:, None, :], (len(indices), self._length, self.output_size)
        )
        scored = np.zeros(self._length, dtype=bool)
        scored[-1] = True
        return SequenceBatch.from_batch_major(inputs, targets, scored)

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        sequence = batch.inputs[:, index, :].reshape(-1)
        image = np.empty_like(sequence)
        if self._permutation is None:
            image[:] = sequence
        else:
            image[self._permutation] = sequence
        image = image.reshape(self._image_shape)
        label = int(batch.targets[-1, index].argmax())
        lines = [
            f"{self._name}: label {label}; {t} of {self._length} tokens answered "
            f"({self.input_size} pixel(s) each, cross-entropy scored at t={self._length - 1})"
        ]
        for row in image:
            shades = (np.minimum(row * len(_SHADES), len(_SHADES) - 1)).astype(int)
            lines.append("|" + "".join(_SHADES[s] for s in shades) + "|")
        if t > 0 and predictions is not None:
            logits = predictions[t - 1, index]
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            guess = int(probabilities.argmax())
            lines.append(
                f"latest prediction (t={t - 1}): class {guess} with p={probabilities[guess]:.2f}"
            )
        else:
            lines.append("no prediction received yet")
        return "\n".join(lines)
