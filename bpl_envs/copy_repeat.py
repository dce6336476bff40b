"""Graves et al.'s (2014) copy-repeat task, one token per step, with the paper's curriculum."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_int, check_non_negative, check_positive
from bpl_envs.losses import NATS_PER_BIT
from bpl_envs.sequence import (
    SequenceBatch,
    SequenceEnv,
    SequenceSource,
    SequenceVectorEnv,
    check_option_names,
)

__all__ = [
    "CopyRepeatCurriculum",
    "CopyRepeatEnv",
    "CopyRepeatSequences",
    "CopyRepeatVectorEnv",
    "CurriculumUpdate",
    "copy_repeat_length",
]


def copy_repeat_length(pattern_length: int, repeats: int) -> int:
    """Number of tokens of a copy-repeat sequence: T = (R + 1) N + 3."""
    return (repeats + 1) * pattern_length + 3


@dataclass(frozen=True)
class CurriculumUpdate:
    """One call of :meth:`CopyRepeatCurriculum.update`: the lengths of the batch it scored."""

    pattern_length: int
    repeats: int
    loss_bits: float
    advanced: bool


class CopyRepeatCurriculum:
    """The paper's copy-repeat curriculum: lengthen the sequences whenever a batch is learnt.

    Start at ``pattern_length`` N and ``repeats`` R. Each :meth:`update` receives a batch's loss
    in bits per output bit; below ``threshold_bits`` the curriculum advances: R += 1 if R < N,
    else N += 1. From N = R = 1 the sequence lengths are T = 5, 7, 9, 12, 15, 19, 23, 28, 33, 39,
    45, 52, 59, 67, ...

    Give it to :class:`CopyRepeatEnv` / :class:`CopyRepeatVectorEnv` (``curriculum=...``) and the
    env updates it itself at the end of every batch. It is a plain object: pickle it (with the
    env generators' states) to checkpoint a run.

    Args:
        pattern_length: initial N, an int >= 1.
        repeats: initial R, an int >= 1.
        threshold_bits: advance when the loss is strictly below this many bits per output bit.
    """

    def __init__(self, pattern_length: int = 1, repeats: int = 1, threshold_bits: float = 0.15):
        self.pattern_length = check_int("pattern_length", pattern_length, minimum=1)
        self.repeats = check_int("repeats", repeats, minimum=1)
        self.threshold_bits = check_positive("threshold_bits", threshold_bits)
        self.history: list[CurriculumUpdate] = []

    @property
    def sequence_length(self) -> int:
        """T = (R + 1) N + 3 of the current stage."""
        return copy_repeat_length(self.pattern_length, self.repeats)

    def update(self, loss_bits: float) -> bool:
        """Record a batch's loss (bits per output bit); advance if below the threshold.

        Returns:
            Whether the curriculum advanced.
        """
        loss_bits = check_non_negative("loss_bits", loss_bits)
        advanced = loss_bits < self.threshold_bits
        self.history.append(
            CurriculumUpdate(self.pattern_length, self.repeats, float(loss_bits), advanced)
        )
        if advanced and self.repeats < self.pattern_length:
            self.repeats += 1
        elif advanced:
            self.pattern_length += 1
        return advanced

    def state_dict(self) -> dict[str, Any]:
        """The curriculum as plain data (what learner checkpoints store)."""
        return {
            "pattern_length": self.pattern_length,
            "repeats": self.repeats,
            "threshold_bits": self.threshold_bits,
            "history": [dataclasses.astuple(update) for update in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.pattern_length = check_int("pattern_length", state["pattern_length"], minimum=1)
        self.repeats = check_int("repeats", state["repeats"], minimum=1)
        self.threshold_bits = float(state["threshold_bits"])
        self.history = [CurriculumUpdate(*update) for update in state["history"]]

    def __repr__(self) -> str:
        return (
            f"CopyRepeatCurriculum(pattern_length={self.pattern_length}, repeats={self.repeats}, "
            f"threshold_bits={self.threshold_bits}, updates={len(self.history)})"
        )


class CopyRepeatSequences(SequenceSource):
    """The copy-repeat dynamics shared by :class:`CopyRepeatEnv` and :class:`CopyRepeatVectorEnv`.

    Input channels: ``bits`` pattern bits, the start flag, the repeat count R/10. Output channels:
    ``bits`` bits and the end flag. Token layout (T = (R + 1) N + 3)::

        t = 0             start flag 1
        t = 1 .. N        the pattern, one random bit vector per step
        t = N + 1         repeat-count channel R/10
        t = N + 2 .. T-2  targets: the pattern repeated R times (end flag 0)      [scored]
        t = T - 1         target: end flag 1, zero bits                            [scored]

    Inputs are zero where not listed; targets are zero before t = N + 2.
    """

    loss = "bce"
    scoring = "window"
    reset_option_names = ("pattern_length", "repeats")

    def __init__(
        self,
        pattern_length: int = 1,
        repeats: int = 1,
        bits: int = 8,
        max_repeats: int = 20,
        curriculum: CopyRepeatCurriculum | None = None,
    ):
        self.bits = check_int("bits", bits, minimum=1)
        self.max_repeats = check_int("max_repeats", max_repeats, minimum=1)
        self._pattern_length = check_int("pattern_length", pattern_length, minimum=1)
        self._repeats = check_int("repeats", repeats, minimum=1, maximum=self.max_repeats)
        if curriculum is not None and not isinstance(curriculum, CopyRepeatCurriculum):
            raise TypeError(
                "curriculum must be a CopyRepeatCurriculum or None, got "
                f"{type(curriculum).__name__}"
            )
        if curriculum is not None and (self._pattern_length, self._repeats) != (1, 1):
            raise ValueError(
                "with a curriculum the lengths come from it: give pattern_length and repeats to "
                f"CopyRepeatCurriculum(...), not to the env (got pattern_length={pattern_length}, "
                f"repeats={repeats})"
            )
        self.curriculum = curriculum
        self.input_size = self.bits + 2
        self.output_size = self.bits + 1
        high = np.ones(self.input_size, dtype=np.float32)
        high[-1] = self.max_repeats / 10
        self.observation_space = spaces.Box(np.zeros_like(high), high, dtype=np.float32)

    @property
    def lengths(self) -> tuple[int, int]:
        """``(N, R)`` of the next sequences: the curriculum's if there is one."""
        if self.curriculum is None:
            return self._pattern_length, self._repeats
        n, r = self.curriculum.pattern_length, self.curriculum.repeats
        if r > self.max_repeats:
            raise ValueError(
                f"the curriculum asks for repeats={r} but the env has max_repeats="
                f"{self.max_repeats}; create the env with a larger max_repeats"
            )
        return n, r

    @property
    def sequence_length(self) -> int:
        return copy_repeat_length(*self.lengths)

    def set_options(self, options: Mapping[str, Any]) -> None:
        check_option_names(options, self.reset_option_names)
        if options and self.curriculum is not None:
            raise ValueError(
                f"reset options {sorted(options)} conflict with the curriculum, which sets the "
                "lengths; change the curriculum instead"
            )
        pattern_length = check_int(
            "pattern_length", options.get("pattern_length", self._pattern_length), minimum=1
        )
        repeats = check_int(
            "repeats", options.get("repeats", self._repeats), minimum=1, maximum=self.max_repeats
        )
        self._pattern_length, self._repeats = pattern_length, repeats

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Uniforms ``(N, bits)`` in [0, 1); the pattern bit is 1 where the uniform is < 0.5.

        The vector env calls this once per sub-env per sequence, so it does the least it can:
        ``rng.random`` costs a fifth of ``rng.integers(0, 2, ...)``, and the thresholding is left
        to :meth:`build`, vectorised over the batch.
        """
        return rng.random((self.lengths[0], self.bits))

    def build(self, draws: Sequence[np.ndarray]) -> SequenceBatch:
        n, r = self.lengths
        length = copy_repeat_length(n, r)
        patterns = (np.stack(draws) < 0.5).astype(np.float32)
        batch_size, bits = len(draws), self.bits
        inputs = np.zeros((batch_size, length, self.input_size), np.float32)
        inputs[:, 0, bits] = 1.0
        inputs[:, 1 : n + 1, :bits] = patterns
        inputs[:, n + 1, bits + 1] = r / 10
        targets = np.zeros((batch_size, length, self.output_size), np.float32)
        targets[:, n + 2 : length - 1, :bits] = np.tile(patterns, (1, r, 1))
        targets[:, length - 1, bits] = 1.0
        scored = np.arange(length) >= n + 2
        return SequenceBatch.from_batch_major(inputs, targets, scored)

    def step_info(
        self, t: int, predictions: np.ndarray, batch: SequenceBatch
    ) -> dict[str, np.ndarray]:
        """``bit_errors`` ``(B,)`` int64: scored entries where (logit > 0) != target."""
        if not batch.scored[t]:
            return {"bit_errors": np.zeros(batch.batch_size, dtype=np.int64)}
        wrong = (predictions > 0) != (batch.targets[t] > 0.5)
        return {"bit_errors": wrong.sum(axis=1, dtype=np.int64)}

    def end_of_batch_info(self, mean_loss: float) -> dict[str, bool | float]:
        """With a curriculum: update it with the batch loss in bits and report it."""
        if self.curriculum is None:
            return {}
        loss_bits = mean_loss / NATS_PER_BIT
        advanced = self.curriculum.update(loss_bits)
        return {"curriculum_loss_bits": loss_bits, "curriculum_advanced": advanced}

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        bits = self.bits
        inputs, targets = batch.inputs[:, index], batch.targets[:, index]
        count_step = int(np.flatnonzero(inputs[:, bits + 1])[0])
        n, r = count_step - 1, round(float(inputs[count_step, bits + 1]) * 10)
        length = batch.sequence_length

        def as_bits(values: np.ndarray) -> str:
            return "".join("1" if v else "0" for v in values[:bits]) + "|" + str(int(values[bits]))

        lines = [
            f"CopyRepeat: pattern_length={n}, repeats={r}, T={length}; "
            f"{t} of {length} tokens answered",
            f"pattern (t=1..{n}):",
            *("  " + "".join(str(int(v)) for v in inputs[s, :bits]) for s in range(1, n + 1)),
            f"repeat count {r} (input {r / 10:g} at t={count_step})",
            f"answer window t={n + 2}..{length - 1} ({bits} bits | end flag), "
            "prediction = (logit > 0):",
        ]
        for s in range(n + 2, length):
            line = f"  t={s:<4d} target {as_bits(targets[s] > 0.5)}"
            if predictions is not None and s < t:
                guess = predictions[s, index] > 0
                wrong = int((guess != (targets[s] > 0.5)).sum())
                line += f"   prediction {as_bits(guess)}   {wrong} wrong"
            lines.append(line)
        if predictions is not None and t > 0:
            lines.append(f"latest prediction (t={t - 1}): {as_bits(predictions[t - 1, index] > 0)}")
        else:
            lines.append("no prediction received yet")
        return "\n".join(lines)


class CopyRepeatEnv(SequenceEnv[CopyRepeatSequences]):
    """Copy-repeat, one token per step (Graves et al. 2014).

    ## Description

    Graves et al.'s (2014) copy-repeat task as used by Pemberton & Costa (2024): the env shows a
    pattern of N random `bits`-bit vectors, then a repeat count R, and the learner must output
    the pattern R times followed by an end flag. One token per step; the learner's prediction for
    the current token is the action.

    | t              | input token x_t                      | target y_t (scored?)           |
    |----------------|--------------------------------------|--------------------------------|
    | 0              | start flag 1                         | zeros (no)                     |
    | 1 .. N         | the pattern, one bit vector per step | zeros (no)                     |
    | N + 1          | repeat-count channel R/10            | zeros (no)                     |
    | N + 2 .. T - 2 | zeros                                | pattern repeated R times (yes) |
    | T - 1          | zeros                                | end flag 1, zero bits (yes)    |

    with T = (R + 1) N + 3.

    ## Action Space

    `Box(-1, 1, (bits + 1,), float32)`: the logits of the `bits` output bits and of the end flag.
    The bounds are nominal (Stable-Baselines3's checker warns for any other Box): ANY finite
    floating action is accepted and scored as is. A wrong shape or a NaN/inf raises a
    ValueError, a non-floating dtype a TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(0, high, (bits + 2,), float32)`: channels 0 .. bits-1 the pattern bits, channel `bits`
    the start flag, channel `bits + 1` the repeat count R/10 (so `high` is 1 except
    `max_repeats / 10` for the last channel). After the last token the returned observation is
    all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` on the scored steps t = N + 2 .. T - 1 and 0.0 before, where `loss` is
    binary cross-entropy with logits, averaged over the `bits + 1` output channels, in nats
    (`bpl_envs.get_loss("bce")`, evaluated in float64).

    `info` of every step: `"target"` (float32 `(bits + 1,)`), `"scored"` (bool), `"loss"` (float,
    0.0 when not scored), `"sequence_end"` (bool, True on the last token) and `"bit_errors"` (int:
    scored entries where `(logit > 0) != target`).

    ## Starting State

    Each `reset` draws a new pattern: `np_random.random((N, bits)) < 0.5`. Sequences are
    independent and all randomness comes from the env's generator (`reset(seed=...)`).

    ## Episode End

    `terminated=True` on the last token (t = T - 1); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates: the step that answers the last token draws the
    next sequence at once and returns its first token, with `info["sequence_end"]=True`.

    ## Curriculum

    With `curriculum=CopyRepeatCurriculum(...)` the env updates the curriculum itself at the end
    of every sequence (vector env: of every batch of sequences): it computes the mean BCE in bits
    (nats / ln 2) over all scored (step, channel) entries of the predictions it received, calls
    `curriculum.update(loss_bits)`, and the next sequences use the curriculum's N and R. The
    terminal step's info adds `"curriculum_loss_bits"` (float) and `"curriculum_advanced"`
    (bool). With a curriculum, `pattern_length`/`repeats` stay at their defaults and the reset
    options are refused: the curriculum alone sets the lengths.

    ## Arguments

    | Parameter        | Type             | Default | Description                   |
    |------------------|------------------|---------|-------------------------------|
    | `pattern_length` | int >= 1         | `1`     | N, bit vectors in the pattern |
    | `repeats`        | 1..`max_repeats` | `1`     | R, repeats to output          |
    | `bits`           | int >= 1         | `8`     | width of a bit vector         |
    | `max_repeats`    | int >= 1         | `20`    | largest R; observation bound  |
    | `curriculum`     | curriculum/None  | `None`  | see Curriculum                |
    | `render_mode`    | str or None     | `None`  | `"ansi"` (bits), `"rgb_array"` |
    | `stream`         | bool             | `False` | never terminate; see Episode End |

    `reset(options={"pattern_length": N, "repeats": R})` (either key) changes the lengths for
    this and all later sequences. `env.unwrapped.task` is the `TaskSpec` of the current sequence:
    `TaskSpec(bits + 2, bits + 1, "bce", "window", T)`.

    ```python
    >>> import gymnasium as gym, bpl_envs
    >>> env = gym.make("bpl/CopyRepeat-v0", pattern_length=3, repeats=2)
    >>> obs, info = env.reset(seed=0)
    >>> env.unwrapped.task
    TaskSpec(input_size=10, output_size=9, loss='bce', scoring='window', sequence_length=12)

    ```

    ## Vectorized environment

    `gym.make_vec("bpl/CopyRepeat-v0", num_envs=B, **kwargs)` gives `CopyRepeatVectorEnv`: B
    sequences in lock-step, natively batched, streaming exactly what
    `SyncVectorEnv([lambda: gym.make("bpl/CopyRepeat-v0", **kwargs)] * B)` streams for the same
    seeds, in each autoreset mode (`autoreset_mode=`, default `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        pattern_length: int = 1,
        repeats: int = 1,
        bits: int = 8,
        max_repeats: int = 20,
        curriculum: CopyRepeatCurriculum | None = None,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        source = CopyRepeatSequences(pattern_length, repeats, bits, max_repeats, curriculum)
        super().__init__(source, render_mode=render_mode, stream=stream)

    @property
    def curriculum(self) -> CopyRepeatCurriculum | None:
        """The curriculum the env updates, if any."""
        return self._source.curriculum


class CopyRepeatVectorEnv(SequenceVectorEnv[CopyRepeatSequences]):
    """Copy-repeat, B sequences in lock-step; see :class:`CopyRepeatEnv` for the task.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`CopyRepeatEnv`. With a curriculum it
    is updated once per batch, from the mean loss over the whole batch.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        pattern_length: int = 1,
        repeats: int = 1,
        bits: int = 8,
        max_repeats: int = 20,
        curriculum: CopyRepeatCurriculum | None = None,
    ):
        source = CopyRepeatSequences(pattern_length, repeats, bits, max_repeats, curriculum)
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )

    @property
    def curriculum(self) -> CopyRepeatCurriculum | None:
        """The curriculum the env updates, if any."""
        return self._source.curriculum
