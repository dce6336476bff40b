"""One-step-ahead prediction of the chaotic Mackey-Glass series, one sample per step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_int, check_non_negative, check_open_fraction, check_positive
from bpl_envs.sequence import SequenceBatch, SequenceEnv, SequenceSource, SequenceVectorEnv
from bpl_envs.splits import check_split

__all__ = [
    "MACKEY_GLASS_SERIES_LENGTH",
    "MACKEY_GLASS_WASHOUT",
    "MackeyGlassEnv",
    "MackeyGlassSequences",
    "MackeyGlassVectorEnv",
    "mackey_glass",
    "mackey_glass_series",
]

MACKEY_GLASS_SERIES_LENGTH = 10_000
"""Samples (time units) of the precomputed series the envs read, train and test together."""
MACKEY_GLASS_WASHOUT = 1_000
"""Time units integrated and discarded before the first sample, so the series is on the
attractor."""
NOISE_CLIP = 4.0
"""Observation noise is clipped at ±4 standard deviations (so the observations are bounded)."""
SERIES_BOUNDS = (0.0, 1.5)
"""Every value of a series from a history in (0, 1.44] lies here (x' >= -gamma x keeps it
positive; x' <= beta max_u u/(1+u^10) - gamma x keeps it below 1.45)."""


def _steps_per(name: str, duration: float, dt: float) -> int:
    """``duration / dt`` as an int, or a ValueError when dt does not divide it."""
    ratio = duration / dt
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"dt={dt} must divide {name}={duration} into a whole number of steps")
    return round(ratio)


def mackey_glass(
    n_samples: int,
    *,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    exponent: float = 10.0,
    x0: float = 1.2,
    dt: float = 0.1,
    sample_step: float = 1.0,
    washout: float = 0.0,
) -> np.ndarray:
    """Integrate dx/dt = beta x(t - tau) / (1 + x(t - tau)^exponent) - gamma x(t).

    The history is constant, x(t) = x0 for t <= 0. Classical fourth-order Runge-Kutta with step
    ``dt`` (``dt`` must divide ``tau``, ``sample_step`` and ``washout``, so the delayed values at
    the start and end of each step are grid values). The delayed value at a step's midpoint is
    the cubic Hermite interpolant of its two grid neighbours and their derivatives (which the
    equation itself gives), x(m) = (x_k + x_{k+1}) / 2 + dt (x'_k - x'_{k+1}) / 8, accurate to
    O(dt^4) like the rest of the step; within the first tau the delayed value is the constant
    history.

    Args:
        n_samples: number of samples returned.
        tau, beta, gamma, exponent: the equation's delay and constants (tau = 17 is chaotic).
        x0: the constant history.
        dt: integration step (time units).
        sample_step: time between two returned samples.
        washout: time integrated and discarded before the first sample.

    Returns:
        float64 ``(n_samples,)``: x(washout + i · sample_step), i = 0 .. n_samples - 1.
    """
    n_samples = check_int("n_samples", n_samples, minimum=1)
    tau, beta = check_positive("tau", tau), check_positive("beta", beta)
    gamma, exponent = check_positive("gamma", gamma), check_positive("exponent", exponent)
    x0, dt = check_positive("x0", x0), check_positive("dt", dt)
    sample_step = check_positive("sample_step", sample_step)
    washout = check_non_negative("washout", washout)
    delay = _steps_per("tau", tau, dt)
    every = _steps_per("sample_step", sample_step, dt)
    first = _steps_per("washout", washout, dt) if washout > 0 else 0
    total = first + (n_samples - 1) * every

    def derivative(x: float, delayed: float) -> float:
        return beta * delayed / (1.0 + delayed**exponent) - gamma * x

    xs = [x0]  # x at grid point k
    slopes = [derivative(x0, x0)]  # x'(t_k) from the right: the equation at grid point k
    half, sixth = 0.5 * dt, dt / 6.0
    for k in range(total):
        j = k - delay  # the delayed interval is [t_j, t_{j+1}]
        if j < 0:  # inside the constant history (its derivative is 0)
            start = middle = end = x0
        else:
            start, end = xs[j], xs[j + 1]
            middle = 0.5 * (start + end) + 0.125 * dt * (slopes[j] - slopes[j + 1])
        x = xs[k]
        k1 = slopes[k]
        k2 = derivative(x + half * k1, middle)
        k3 = derivative(x + half * k2, middle)
        k4 = derivative(x + dt * k3, end)
        x_next = x + sixth * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        xs.append(x_next)
        delayed_next = x0 if k + 1 - delay < 0 else xs[k + 1 - delay]
        slopes.append(derivative(x_next, delayed_next))
    return np.asarray(xs[first::every], dtype=np.float64)


@lru_cache(maxsize=4)
def mackey_glass_series(tau: int = 17) -> np.ndarray:
    """The series every env of this ``tau`` reads, computed once per process.

    :func:`mackey_glass` with x0 = 1.2, dt = 0.1, one sample per time unit, after a washout of
    :data:`MACKEY_GLASS_WASHOUT` time units: float64 ``(MACKEY_GLASS_SERIES_LENGTH,)``,
    read-only.
    """
    series = mackey_glass(
        MACKEY_GLASS_SERIES_LENGTH, tau=float(tau), washout=float(MACKEY_GLASS_WASHOUT)
    )
    series.setflags(write=False)
    return series


@dataclass(frozen=True)
class Window:
    """One sequence: its first sample's index in the split and its observation noise ``(T,)``
    (None without noise)."""

    start: int
    noise: np.ndarray | None


class MackeyGlassSequences(SequenceSource):
    """The Mackey-Glass dynamics shared by :class:`MackeyGlassEnv` and its vector env."""

    loss = "mse"
    scoring = "all"
    input_size = 1
    output_size = 1

    def __init__(
        self,
        sequence_length: int = 100,
        tau: int = 17,
        noise_std: float = 0.0,
        split: str = "train",
        test_fraction: float = 0.2,
    ):
        self._length = check_int("sequence_length", sequence_length, minimum=1)
        self.tau = check_int("tau", tau, minimum=1)
        self.noise_std = check_non_negative("noise_std", noise_std)
        self.split = check_split(split)
        test_fraction = check_open_fraction("test_fraction", test_fraction)
        series = mackey_glass_series(self.tau)
        cut = round(len(series) * (1.0 - test_fraction))
        self.series = series[:cut] if split == "train" else series[cut:]
        if len(self.series) < self._length + 1:
            raise ValueError(
                f"the {split} split holds {len(self.series)} samples, fewer than "
                f"sequence_length + 1 = {self._length + 1}; shorten the sequences or change "
                f"test_fraction (got {test_fraction})"
            )
        margin = NOISE_CLIP * self.noise_std
        low, high = SERIES_BOUNDS[0] - margin, SERIES_BOUNDS[1] + margin
        self.observation_space = spaces.Box(low, high, (1,), np.float32)

    @property
    def sequence_length(self) -> int:
        return self._length

    def _noise(self, rng: np.random.Generator) -> np.ndarray | None:
        return rng.standard_normal(self._length) if self.noise_std > 0 else None

    def draw(self, rng: np.random.Generator) -> Window:
        """A start drawn uniformly among the windows of T + 1 samples, then the noise."""
        return Window(int(rng.integers(len(self.series) - self._length)), self._noise(rng))

    def next_draw(self, previous: Window, rng: np.random.Generator) -> Window:
        """The window after ``previous`` (back to the split's start when it would run past the
        end), with fresh noise."""
        start = previous.start + self._length
        if start + self._length + 1 > len(self.series):
            start = 0
        return Window(start, self._noise(rng))

    def _batch(self, starts: np.ndarray, noise: np.ndarray | None) -> SequenceBatch:
        """Windows at ``starts`` (B,), with standard-normal noise ``(B, T)`` or None."""
        samples = self.series[starts[:, None] + np.arange(self._length + 1)]
        inputs = samples[:, :-1].copy()
        if noise is not None:
            inputs += self.noise_std * np.clip(noise, -NOISE_CLIP, NOISE_CLIP)
        scored = np.ones(self._length, dtype=bool)
        return SequenceBatch.from_batch_major(inputs[..., None], samples[:, 1:, None], scored)

    def build(self, draws: Sequence[Window]) -> SequenceBatch:
        starts = np.array([window.start for window in draws], dtype=np.int64)
        noises = [window.noise for window in draws if window.noise is not None]
        return self._batch(starts, np.stack(noises) if noises else None)

    def windows(self, noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole split cut into consecutive windows of T inputs (N = (n - 1) // T of them).

        With ``noise_std > 0`` the noise comes from ``default_rng(noise_seed)``.

        Returns:
            ``(inputs float32 (N, T, 1), targets float32 (N, T, 1), scored bool (T,))``, the
            arguments of :func:`agents.evaluation.evaluate_sequences`.
        """
        noise_seed = check_int("noise_seed", noise_seed, minimum=0)
        count = (len(self.series) - 1) // self._length
        starts = np.arange(count, dtype=np.int64) * self._length
        noise = None
        if self.noise_std > 0:
            noise = np.random.default_rng(noise_seed).standard_normal((count, self._length))
        batch = self._batch(starts, noise)
        inputs = np.ascontiguousarray(batch.inputs.swapaxes(0, 1))
        return inputs, np.ascontiguousarray(batch.targets.swapaxes(0, 1)), batch.scored.copy()

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        lines = [
            f"MackeyGlass (tau={self.tau}, {self.split}): T={self._length}; {t} of "
            f"{self._length} tokens answered",
            "  t     input    target   prediction",
        ]
        for s in range(max(0, t - 10), min(t + 1, self._length)):
            row = f"  {s:<4d}  {batch.inputs[s, index, 0]:.4f}   {batch.targets[s, index, 0]:.4f}"
            if predictions is not None and s < t:
                row += f"   {predictions[s, index, 0]:.4f}"
            lines.append(row)
        return "\n".join(lines)


class MackeyGlassEnv(SequenceEnv):
    """One-step-ahead prediction of the Mackey-Glass series, one sample per step.

    ## Description

    The Mackey-Glass delay differential equation (Mackey & Glass 1977)

        dx/dt = beta x(t - tau) / (1 + x(t - tau)^10) - gamma x(t),  beta = 0.2, gamma = 0.1,

    is chaotic for tau = 17, the classic benchmark for chaotic time-series prediction. The env
    shows x_t and the learner predicts x_{t+1}, on every step.

    The series is integrated once per process (`bpl_envs.mackey_glass.mackey_glass`): constant
    history x = 1.2 for t <= 0, classical RK4 with step dt = 0.1 and the delayed value at each
    step's midpoint by cubic Hermite interpolation (fourth order throughout), one sample per time
    unit, 10,000 samples after a washout of 1,000 time units (on the attractor: for tau = 17 the
    samples span [0.42, 1.32], for tau = 30 [0.19, 1.40]). The first `1 - test_fraction` of
    the samples are the train split, the rest the test split.

    | t          | input token x_t         | target y_t (scored?)    |
    |------------|-------------------------|-------------------------|
    | 0 .. T - 1 | series[s + t] (+ noise) | series[s + t + 1] (yes) |

    for a window start s.

    ## Action Space

    `Box(-1, 1, (1,), float32)`: the predicted next value. The bounds are nominal
    (Stable-Baselines3's checker warns for any other Box): ANY finite floating action is accepted
    and scored as is. A wrong shape or a NaN/inf raises a ValueError, a non-floating dtype a
    TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(-4 noise_std, 1.5 + 4 noise_std, (1,), float32)`: the current sample, plus observation
    noise when `noise_std > 0` (standard normal times `noise_std`, clipped at ±4 standard
    deviations; the targets are the clean series). After the last token the returned
    observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` on every step, `loss` = (prediction - x_{t+1})^2 (`bpl_envs.get_loss("mse")`,
    in float64). `info`: `"target"` (float32 `(1,)`), `"scored"` (always True), `"loss"`,
    `"sequence_end"` (bool, True on the last token). Reference levels on the default test split
    (tau = 17): predicting the split's mean scores its variance, 0.051; predicting
    x_{t+1} = x_t scores 0.0011.

    ## Starting State

    Each sequence starts at `np_random.integers(n - T)` in its split of n samples (a uniformly
    drawn window of T + 1 samples), then, with noise, draws `np_random.standard_normal(T)`.
    All randomness comes from the env's generator (`reset(seed=...)`).

    ## Episode End

    `terminated=True` on the last token (t = T - 1); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates and reads the series continuously: the step that
    answers the last token starts the next window where this one ended (back at the split's
    start when it would run past the end), with fresh noise, and marks the boundary with
    `info["sequence_end"]=True`. `reset()` starts at a random window.

    ## Arguments

    | Parameter         | Type               | Default   | Description                         |
    |-------------------|--------------------|-----------|-------------------------------------|
    | `sequence_length` | int >= 1           | `100`     | T, tokens per window                |
    | `tau`             | int >= 1           | `17`      | the delay (17: chaotic; 30: more)   |
    | `noise_std`       | float >= 0         | `0.0`     | std of the observation noise        |
    | `split`           | `"train"`/`"test"` | `"train"` | which part of the series to read    |
    | `test_fraction`   | float in (0, 1)    | `0.2`     | the last share of the series: test  |
    | `render_mode`     | str or None        | `None`    | `"ansi"` (a table), `"rgb_array"`   |
    | `stream`          | bool               | `False`   | read continuously; see Episode End  |

    No reset options. `env.unwrapped.task` is `TaskSpec(1, 1, "mse", "all", T)`.
    `env.unwrapped.windows()` returns the whole split as consecutive windows (for evaluation).

    ## Vectorized environment

    `gym.make_vec("bpl/MackeyGlass-v0", num_envs=B, **kwargs)` gives `MackeyGlassVectorEnv`: B
    sequences in lock-step, streaming exactly what a `SyncVectorEnv` of B single envs streams,
    in each autoreset mode (`autoreset_mode=`, default `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        sequence_length: int = 100,
        tau: int = 17,
        noise_std: float = 0.0,
        split: str = "train",
        test_fraction: float = 0.2,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        source = MackeyGlassSequences(sequence_length, tau, noise_std, split, test_fraction)
        super().__init__(source, render_mode, stream)

    def windows(self, noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The split as consecutive windows; see :meth:`MackeyGlassSequences.windows`."""
        return self._source.windows(noise_seed)


class MackeyGlassVectorEnv(SequenceVectorEnv):
    """Mackey-Glass prediction, B windows in lock-step; see :class:`MackeyGlassEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`MackeyGlassEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        sequence_length: int = 100,
        tau: int = 17,
        noise_std: float = 0.0,
        split: str = "train",
        test_fraction: float = 0.2,
    ):
        source = MackeyGlassSequences(sequence_length, tau, noise_std, split, test_fraction)
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )

    def windows(self, noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The split as consecutive windows; see :meth:`MackeyGlassSequences.windows`."""
        return self._source.windows(noise_seed)
