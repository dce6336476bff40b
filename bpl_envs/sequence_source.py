"""What a streaming sequence task is: its batch of sequences, its dynamics and their stepper.

A task is a :class:`SequenceSource`: its sizes, loss and scoring, how the random numbers of ONE
sequence are drawn from a generator (:meth:`SequenceSource.draw`) and how a batch of B sequences
is built from B such draws, vectorised (:meth:`SequenceSource.build`), into a
:class:`SequenceBatch`. A :class:`SequenceStepper` streams a batch token by token: each step only
indexes the precomputed ``(T, B, n)`` arrays and evaluates the loss on a ``(B, n_out)`` block.
The Gymnasium front ends that drive them are in :mod:`bpl_envs.sequence`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from bpl_envs.losses import get_loss
from bpl_envs.rendering import sequence_image
from bpl_envs.task_spec import TaskSpec

__all__ = ["SequenceBatch", "SequenceSource", "SequenceStepper", "StepInfo", "check_option_names"]

StepInfo = dict[str, np.ndarray]
"""Info entries of one step, each an array ``(B, ...)``."""


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

    def next_draw(self, previous: Any, rng: np.random.Generator) -> Any:  # noqa: ARG002
        """The draw of the sequence that follows ``previous`` on a stream (``stream=True``).

        By default sequences are independent: a fresh :meth:`draw` (a hook: a task that reads
        one long series, a text or a time series, overrides it to continue where ``previous``
        ended).
        """
        return self.draw(rng)

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

    def step_info(self, t: int, predictions: np.ndarray, batch: SequenceBatch) -> StepInfo:  # noqa: ARG002
        """Task-specific info entries for step ``t``, each an array ``(B, ...)``; none by default
        (a hook: tasks that add entries use the arguments).

        ``predictions`` is the float64 ``(B, output_size)`` block received at step t.
        """
        return {}

    def loss_info(self, loss: np.ndarray) -> StepInfo:  # noqa: ARG002
        """Info entries derived from the step's loss (float64 ``(B,)`` in nats, 0 on unscored
        steps), e.g. the loss in other units; none by default (a hook)."""
        return {}

    def end_of_batch_info(self, mean_loss: float) -> dict[str, bool | int | float]:  # noqa: ARG002
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
            **self.source.loss_info(loss),
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
        if render_mode == "ansi":
            return self.source.render(self.batch, index, self.t, self.predictions)
        return self.source.render_image(self.batch, index, self.t, self.predictions)
