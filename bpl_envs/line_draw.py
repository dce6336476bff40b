"""The BP(lambda) paper's toy task: a fixed cue at t = 0, then draw a straight 2-D line."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_bool, check_int
from bpl_envs.sequence import (
    SequenceBatch,
    SequenceEnv,
    SequenceSource,
    SequenceVectorEnv,
)

__all__ = ["LineDrawEnv", "LineDrawSequences", "LineDrawVectorEnv", "line_draw_cue"]


def line_draw_cue(cue_bits: int, cue_seed: int) -> np.ndarray:
    """The fixed cue: ``cue_bits`` random bits from ``default_rng(cue_seed)``, never all zeros.

    Draws ``integers(0, 2, cue_bits)`` until a draw has a 1. Returns float32 ``(cue_bits,)``.
    """
    rng = np.random.default_rng(cue_seed)
    cue = rng.integers(0, 2, cue_bits)
    while not cue.any():
        cue = rng.integers(0, 2, cue_bits)
    return cue.astype(np.float32)


def _check_end_point(end_point: Any) -> tuple[float, float]:
    if (
        not isinstance(end_point, Sequence | np.ndarray)
        or len(end_point) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in end_point)
    ):
        raise TypeError(f"end_point must be a pair of floats (x, y), got {end_point!r}")
    if not all(math.isfinite(v) for v in end_point):
        raise ValueError(f"end_point must be finite, got {end_point!r}")
    return float(end_point[0]), float(end_point[1])


class LineDrawSequences(SequenceSource):
    """The line-draw dynamics shared by :class:`LineDrawEnv` and :class:`LineDrawVectorEnv`.

    Deterministic: every sequence is the same, and no random number is drawn per sequence.
    """

    loss = "mse"
    output_size = 2

    def __init__(
        self,
        sequence_length: int = 10,
        cue_bits: int = 10,
        end_point: tuple[float, float] = (0.0, 1.0),
        end_only: bool = True,
        cue_seed: int = 123,
    ):
        self._length = check_int("sequence_length", sequence_length, minimum=1)
        self.input_size = check_int("cue_bits", cue_bits, minimum=1)
        self.end_point = _check_end_point(end_point)
        self.scoring = "last" if check_bool("end_only", end_only) else "all"
        self.cue = line_draw_cue(self.input_size, check_int("cue_seed", cue_seed, minimum=0))
        self.observation_space = spaces.Box(0.0, 1.0, (self.input_size,), np.float32)

    @property
    def sequence_length(self) -> int:
        return self._length

    def line(self) -> np.ndarray:
        """Targets t / (T - 1) * end_point, t = 0 .. T-1 (T = 1: the end point), ``(T, 2)``."""
        length = self._length
        fractions = np.arange(length) / (length - 1) if length > 1 else np.ones(1)
        return (fractions[:, None] * np.asarray(self.end_point)).astype(np.float32)

    def draw(self, rng: np.random.Generator) -> None:  # noqa: ARG002 (SequenceSource hook)
        """Nothing is random per sequence."""
        return None

    def build(self, draws: Sequence[None]) -> SequenceBatch:
        batch_size, length = len(draws), self._length
        inputs = np.zeros((batch_size, length, self.input_size), np.float32)
        inputs[:, 0] = self.cue
        targets = np.broadcast_to(self.line(), (batch_size, length, 2))
        scored = np.ones(length, bool) if self.scoring == "all" else np.arange(length) == length - 1
        return SequenceBatch.from_batch_major(inputs, targets, scored)

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        cue = "".join(str(int(v)) for v in batch.inputs[0, index])
        lines = [
            f"LineDraw: T={self._length}, end_point={self.end_point}, scoring={self.scoring!r}; "
            f"{t} of {self._length} tokens answered",
            f"cue (t=0): {cue}",
            "  t     target              prediction          scored",
        ]
        for s in range(self._length):
            x, y = batch.targets[s, index]
            row = f"  {s:<4d}  ({x:+.3f}, {y:+.3f})  "
            if predictions is not None and s < t:
                px, py = predictions[s, index]
                row += f"({px:+.3f}, {py:+.3f})  "
            else:
                row += "-" + " " * 17
            lines.append(row + ("yes" if batch.scored[s] else ""))
        return "\n".join(line.rstrip() for line in lines)


class LineDrawEnv(SequenceEnv[LineDrawSequences]):
    """The toy task of Pemberton & Costa (2024), one token per step.

    ## Description

    A fixed random binary cue of `cue_bits` bits is shown at t = 0, zeros afterwards; the learner
    must output the point t / (T - 1) * `end_point` of the straight line from the origin to
    `end_point` (T = 1: the end point itself). The paper scores only the end point (MSE at the
    last step) and learns a synthetic gradient for a frozen linear RNN on it.

    The cue is drawn ONCE, from `numpy.random.default_rng(cue_seed)` (`integers(0, 2, cue_bits)`,
    redrawn while it is all zeros): it is a fixed part of the task, independent of the env's seed.
    Every sequence is therefore the same and `reset(seed=...)` changes nothing.

    ## Action Space

    `Box(-1, 1, (2,), float32)`: the predicted point (x, y). The bounds are nominal
    (Stable-Baselines3's checker warns for any other Box): ANY finite floating action is accepted
    and scored as is. A wrong shape or a NaN/inf raises a ValueError, a non-floating dtype a
    TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(0, 1, (cue_bits,), float32)`: the cue at t = 0, zeros at t >= 1. After the last token the
    returned observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` on the scored steps and 0.0 elsewhere, `loss` = mean over the two coordinates
    of the squared error (`bpl_envs.get_loss("mse")`, in float64). Scored: the last step only
    (`end_only=True`, scoring "last") or every step (`end_only=False`, scoring "all").
    `info`: `"target"` (float32 `(2,)`, the point of the line at this step, also on unscored
    steps), `"scored"` (bool), `"loss"` (float, 0.0 when not scored), `"sequence_end"` (bool,
    True on the last token).

    ## Starting State

    The cue token. Nothing is random.

    ## Episode End

    `terminated=True` on the last token (t = T - 1); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates: the step that answers the last token draws the
    next sequence at once and returns its first token, with `info["sequence_end"]=True`.

    ## Arguments

    | Parameter         | Type           | Default      | Description                         |
    |-------------------|----------------|--------------|-------------------------------------|
    | `sequence_length` | int >= 1       | `10`         | T, tokens per sequence              |
    | `cue_bits`        | int >= 1       | `10`         | size of the cue (and of each token) |
    | `end_point`       | (float, float) | `(0.0, 1.0)` | where the line ends                 |
    | `end_only`        | bool           | `True`       | score the last step only (else all) |
    | `cue_seed`        | int >= 0       | `123`        | seed of the fixed cue               |
    | `render_mode`     | str or None    | `None`       | `"ansi"` (a table), `"rgb_array"`   |
    | `stream`          | bool           | `False`      | never terminate; see Episode End    |

    No reset options. `env.unwrapped.task` is
    `TaskSpec(cue_bits, 2, "mse", "last" or "all", sequence_length)`.

    ## Vectorized environment

    `gym.make_vec("bpl/LineDraw-v0", num_envs=B, **kwargs)` gives `LineDrawVectorEnv`: B
    sequences in lock-step, streaming exactly what a `SyncVectorEnv` of B single envs streams, in
    each autoreset mode (`autoreset_mode=`, default `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        sequence_length: int = 10,
        cue_bits: int = 10,
        end_point: tuple[float, float] = (0.0, 1.0),
        end_only: bool = True,
        cue_seed: int = 123,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        source = LineDrawSequences(sequence_length, cue_bits, end_point, end_only, cue_seed)
        super().__init__(source, render_mode=render_mode, stream=stream)


class LineDrawVectorEnv(SequenceVectorEnv[LineDrawSequences]):
    """The line-draw toy task, B sequences in lock-step; see :class:`LineDrawEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`LineDrawEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        sequence_length: int = 10,
        cue_bits: int = 10,
        end_point: tuple[float, float] = (0.0, 1.0),
        end_only: bool = True,
        cue_seed: int = 123,
    ):
        source = LineDrawSequences(sequence_length, cue_bits, end_point, end_only, cue_seed)
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )
