"""Train/test splits of a labelled data set: the split names and a seeded stratified split."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_split", "stratified_split"]


def check_split(split: Any) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise a ValueError."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


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
