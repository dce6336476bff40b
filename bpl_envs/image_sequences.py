"""Image classification fed token by token: the task source of sequential digits and MNIST."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from bpl_envs.sequence_source import SequenceBatch, SequenceSource

__all__ = ["ImageSequences"]

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
        """The whole split in order: float32 inputs ``(n, T, token_size)``, int64 labels (n,)."""
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
