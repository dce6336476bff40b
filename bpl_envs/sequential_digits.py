"""scikit-learn's 8x8 handwritten digits read row by row, classified at the last row."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_int, check_open_fraction
from bpl_envs.image_sequences import ImageSequences
from bpl_envs.sequence import SequenceEnv, SequenceVectorEnv
from bpl_envs.splits import check_split, stratified_split

__all__ = [
    "SequentialDigitsEnv",
    "SequentialDigitsVectorEnv",
    "digits_sequences",
    "load_digits_pixels",
]

DIGITS_MAX_VALUE = 16


@lru_cache(maxsize=1)
def load_digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits once per process: pixels uint8 ``(1797, 64)`` in 0..16, labels int64.

    The arrays are read-only (they are shared by every env of the process).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.reshape(len(digits.images), -1).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def digits_sequences(split: str, test_fraction: float, split_seed: int) -> ImageSequences:
    """The :class:`ImageSequences` of one split of the digits (8 tokens of 8 pixels)."""
    split = check_split(split)
    test_fraction = check_open_fraction("test_fraction", test_fraction)
    split_seed = check_int("split_seed", split_seed, minimum=0)
    pixels, labels = load_digits_pixels()
    train, test = stratified_split(labels, test_fraction, split_seed)
    indices = train if split == "train" else test
    return ImageSequences(
        pixels[indices],
        labels[indices],
        image_shape=(8, 8),
        max_value=DIGITS_MAX_VALUE,
        token_size=8,
        permutation=None,
        name=f"SequentialDigits ({split})",
    )


class SequentialDigitsEnv(SequenceEnv[ImageSequences]):
    """scikit-learn's 8x8 digits fed row by row: a small, download-free sequential MNIST.

    ## Description

    Each sequence is one image of `sklearn.datasets.load_digits()` (1,797 images of 8x8 pixels,
    values 0..16, shipped with scikit-learn): 8 tokens, the image's rows top to bottom, pixels
    scaled to [0, 1] (value / 16). The learner must name the digit at the last row: 10-way softmax
    cross-entropy scored at t = 7 only.

    The data are split once, with a seeded stratified shuffle: for each class in turn its indices
    are shuffled by `numpy.random.default_rng(split_seed)` and the first
    `round(test_fraction * class size)` are the test split (0.2 gives 1,438 train / 359 test
    images). Each sequence draws one image of the split uniformly at random, with replacement
    (`np_random.integers(n)`). `env.unwrapped.dataset()` returns the whole split in order, for
    evaluation: inputs float32 `(n, 8, 8)` and labels int64 `(n,)`.

    ## Action Space

    `Box(-1, 1, (10,), float32)`: the logits of the 10 classes. The bounds are nominal
    (Stable-Baselines3's checker warns for any other Box): ANY finite floating action is accepted
    and scored as is. A wrong shape or a NaN/inf raises a ValueError, a non-floating dtype a
    TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(0, 1, (8,), float32)`: one row of the image. After the last row the returned
    observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` at the last step, 0.0 before; `loss` is the softmax cross-entropy of the
    logits against the one-hot label, in nats (`bpl_envs.get_loss("ce")`, in float64).
    `info`: `"target"` (float32 `(10,)`, the one-hot label, given on every step but scored at the
    last only), `"scored"` (bool), `"loss"` (float, 0.0 when not scored), `"sequence_end"` (bool,
    True on the last token).

    ## Starting State

    The first row of a randomly drawn image of the split.

    ## Episode End

    `terminated=True` on the last row (t = 7); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates: the step that answers the last token draws the
    next sequence at once and returns its first token, with `info["sequence_end"]=True`.

    ## Arguments

    | Parameter       | Type               | Default   | Description                              |
    |-----------------|--------------------|-----------|------------------------------------------|
    | `split`         | `"train"`/`"test"` | `"train"` | which part of the data to draw from      |
    | `test_fraction` | float in (0, 1)    | `0.2`     | share of each class held out for "test"  |
    | `split_seed`    | int >= 0           | `0`       | seed of the stratified split             |
    | `render_mode`   | str or None        | `None`    | `"ansi"` (image, guess), `"rgb_array"`   |
    | `stream`        | bool               | `False`   | never terminate; see Episode End         |

    No reset options. `env.unwrapped.task` is `TaskSpec(8, 10, "ce", "last", 8)`.

    ## Vectorized environment

    `gym.make_vec("bpl/SequentialDigits-v0", num_envs=B, **kwargs)` gives
    `SequentialDigitsVectorEnv`: B sequences in lock-step, streaming exactly what a
    `SyncVectorEnv` of B single envs streams, in each autoreset mode (`autoreset_mode=`, default
    `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        split: str = "train",
        test_fraction: float = 0.2,
        split_seed: int = 0,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        super().__init__(digits_sequences(split, test_fraction, split_seed), render_mode, stream)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in order: inputs float32 ``(n, 8, 8)``, labels int64 ``(n,)``."""
        return self._source.dataset()


class SequentialDigitsVectorEnv(SequenceVectorEnv[ImageSequences]):
    """Sequential digits, B sequences in lock-step; see :class:`SequentialDigitsEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`SequentialDigitsEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        split: str = "train",
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ):
        source = digits_sequences(split, test_fraction, split_seed)
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in order: inputs float32 ``(n, 8, 8)``, labels int64 ``(n,)``."""
        return self._source.dataset()
