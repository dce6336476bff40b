"""Hochreiter & Schmidhuber's (1997) adding problem: add the two marked numbers of a sequence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_int
from bpl_envs.sequence import SequenceBatch, SequenceEnv, SequenceSource, SequenceVectorEnv

__all__ = [
    "ADDING_CHANCE_MSE",
    "AddingProblemEnv",
    "AddingProblemSequences",
    "AddingProblemVectorEnv",
]

ADDING_CHANCE_MSE = 1.0 / 6.0
"""Expected MSE of the best constant prediction, 1.0: Var(U1 + U2) = 2 · 1/12 = 1/6."""


class AddingProblemSequences(SequenceSource):
    """The adding-problem dynamics shared by :class:`AddingProblemEnv` and its vector env.

    One draw is ``rng.random(T + 2)``: the T values, then two uniforms u, v that place the
    markers at ``floor(u · h)`` and ``h + floor(v · (T - h))`` with ``h = T // 2`` (one in each
    half). One call per sequence keeps the vector env's per-sequence work small.
    """

    loss = "mse"
    scoring = "last"
    input_size = 2
    output_size = 1

    def __init__(self, sequence_length: int = 50):
        self._length = check_int("sequence_length", sequence_length, minimum=2)
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)

    @property
    def sequence_length(self) -> int:
        return self._length

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return rng.random(self._length + 2)

    def marker_positions(self, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Marker positions from the two trailing uniforms of each draw, int64 ``(B,)`` each."""
        half = self._length // 2
        first = np.floor(uniforms[:, 0] * half).astype(np.int64)
        second = half + np.floor(uniforms[:, 1] * (self._length - half)).astype(np.int64)
        return first, second

    def build(self, draws: Sequence[np.ndarray]) -> SequenceBatch:
        length = self._length
        stacked = np.stack(draws)
        values = stacked[:, :length]
        first, second = self.marker_positions(stacked[:, length:])
        rows = np.arange(len(draws))
        inputs = np.zeros((len(draws), length, 2), np.float32)
        inputs[:, :, 0] = values
        inputs[rows, first, 1] = 1.0
        inputs[rows, second, 1] = 1.0
        # the sum of the (float32) values the learner sees
        total = inputs[rows, first, 0].astype(np.float64) + inputs[rows, second, 0]
        targets = np.broadcast_to(total[:, None, None], (len(draws), length, 1))
        scored = np.arange(length) == length - 1
        return SequenceBatch.from_batch_major(inputs, targets, scored)

    def sample(self, n_sequences: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_sequences`` sequences drawn from ``default_rng(seed)`` (not an env's generator).

        Returns:
            ``(inputs float32 (N, T, 2), targets float32 (N, T, 1), scored bool (T,))``, the
            arguments of :func:`agents.evaluation.evaluate_sequences`.
        """
        n_sequences = check_int("n_sequences", n_sequences, minimum=1)
        rng = np.random.default_rng(check_int("seed", seed, minimum=0))
        batch = self.build([self.draw(rng) for _ in range(n_sequences)])
        inputs = np.ascontiguousarray(batch.inputs.swapaxes(0, 1))
        return inputs, np.ascontiguousarray(batch.targets.swapaxes(0, 1)), batch.scored.copy()

    def end_of_batch_info(self, mean_loss: float) -> dict[str, float]:  # noqa: ARG002
        """``chance_mse``: the expected MSE of predicting 1.0, 1/6 (reported with the loss)."""
        return {"chance_mse": ADDING_CHANCE_MSE}

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        inputs = batch.inputs[:, index]
        marked = np.flatnonzero(inputs[:, 1])
        target = float(batch.targets[-1, index, 0])
        lines = [
            f"AddingProblem: T={self._length}; {t} of {self._length} tokens answered",
            "values (marked ones in [brackets]):",
        ]
        cells = [f"[{v:.2f}]" if s in marked else f" {v:.2f} " for s, v in enumerate(inputs[:, 0])]
        for start in range(0, len(cells), 10):
            lines.append(("  " + "".join(cells[start : start + 10])).rstrip())
        parts = " + ".join(f"{inputs[s, 0]:.3f} (t={s})" for s in marked)
        lines.append(f"target at t={self._length - 1}: {parts} = {target:.3f}")
        if predictions is not None and t > 0:
            lines.append(f"latest prediction (t={t - 1}): {predictions[t - 1, index, 0]:.3f}")
        else:
            lines.append("no prediction received yet")
        return "\n".join(lines)


class AddingProblemEnv(SequenceEnv):
    """The adding problem (Hochreiter & Schmidhuber 1997), one token per step.

    ## Description

    Each token has two channels: a value drawn uniformly from [0, 1) and a marker. Exactly two
    tokens are marked, one in each half of the sequence; the learner must output the sum of the
    two marked values at the last step. Everything between the markers and the end is
    distraction, so the task measures how far back credit can be assigned: the first marker is
    on average 3T/4 tokens before the answer.

    | t                      | input token x_t                      | target y_t (scored?)       |
    |------------------------|--------------------------------------|----------------------------|
    | 0 .. T - 2             | (value_t, marker_t)                  | the sum (no)               |
    | T - 1                  | (value_{T-1}, marker_{T-1})          | the sum (yes)              |

    with markers at a ∈ [0, T//2) and b ∈ [T//2, T) and sum = value_a + value_b (of the float32
    values the env shows).

    ## Chance level

    Predicting the constant 1.0 (the mean of the sum) is the best a learner can do without
    memory. The sum of two independent U(0, 1) has variance 2 · 1/12 = 1/6, so its expected MSE
    is **1/6 ≈ 0.1667** (`bpl_envs.adding_problem.ADDING_CHANCE_MSE`), reported on the last
    step as `info["chance_mse"]`. A test MSE well below it means the markers are being used.

    ## Action Space

    `Box(-1, 1, (1,), float32)`: the predicted sum. The bounds are nominal (Stable-Baselines3's
    checker warns for any other Box): ANY finite floating action is accepted and scored as is. A
    wrong shape or a NaN/inf raises a ValueError, a non-floating dtype a TypeError; nothing is
    clipped or reshaped.

    ## Observation Space

    `Box(0, 1, (2,), float32)`: channel 0 the value, channel 1 the marker (0 or 1). After the
    last token the returned observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` at the last step and 0.0 before; `loss` is the squared error of the sum
    (`bpl_envs.get_loss("mse")`, in float64). `info` of every step: `"target"` (float32 `(1,)`,
    the sum, given on every step but scored at the last only), `"scored"` (bool), `"loss"`
    (float, 0.0 when not scored), `"sequence_end"` (bool, True on the last token); the last step
    adds `"chance_mse"` (1/6).

    ## Starting State

    Each sequence is one call `np_random.random(T + 2)`: the T values, then two uniforms u, v
    that place the markers at `floor(u · (T//2))` and `T//2 + floor(v · (T - T//2))`. Sequences
    are independent; all randomness comes from the env's generator (`reset(seed=...)`).

    ## Episode End

    `terminated=True` on the last token (t = T - 1); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates: the step that answers the last token draws the
    next sequence at once and returns its first token, with `info["sequence_end"]=True`.

    ## Arguments

    | Parameter         | Type          | Default | Description                      |
    |-------------------|---------------|---------|----------------------------------|
    | `sequence_length` | int >= 2      | `50`    | T, tokens per sequence           |
    | `render_mode`     | str or None   | `None`  | `"ansi"` (values, sum), `"rgb_array"` |
    | `stream`          | bool          | `False` | never terminate; see Episode End |

    No reset options. `env.unwrapped.task` is `TaskSpec(2, 1, "mse", "last", T)`.
    `env.unwrapped.sample(n, seed)` returns n sequences as arrays (a fixed test set).

    ## Vectorized environment

    `gym.make_vec("bpl/AddingProblem-v0", num_envs=B, **kwargs)` gives `AddingProblemVectorEnv`:
    B sequences in lock-step, streaming exactly what a `SyncVectorEnv` of B single envs streams,
    in each autoreset mode (`autoreset_mode=`, default `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self, sequence_length: int = 50, render_mode: str | None = None, stream: bool = False
    ):
        super().__init__(AddingProblemSequences(sequence_length), render_mode, stream)

    def sample(self, n_sequences: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A fixed set of sequences (e.g. a test set); see :meth:`AddingProblemSequences.sample`."""
        return self._source.sample(n_sequences, seed)


class AddingProblemVectorEnv(SequenceVectorEnv):
    """The adding problem, B sequences in lock-step; see :class:`AddingProblemEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`AddingProblemEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        sequence_length: int = 50,
    ):
        super().__init__(
            num_envs,
            AddingProblemSequences(sequence_length),
            autoreset_mode=autoreset_mode,
            render_mode=render_mode,
            stream=stream,
        )

    def sample(self, n_sequences: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A fixed set of sequences (e.g. a test set); see :meth:`AddingProblemSequences.sample`."""
        return self._source.sample(n_sequences, seed)
