"""Per-step losses shared by the task environments and the learners.

The environments pay ``reward = -loss.value(action, target)`` on scored steps and the learners
differentiate ``loss.gradient(prediction, target)``: one definition, so the two cannot disagree.

Every function takes a prediction and a target of the same shape ``(..., n_out)`` (the output
dimension last, any leading batch/time dimensions) and works on NumPy arrays and torch tensors
alike; the result has the type of the input.

=========  ==================================  ==================================
name       value per step, shape ``(...)``     gradient, shape ``(..., n_out)``
=========  ==================================  ==================================
``"mse"``  mean_k (p_k - y_k)^2                2 (p - y) / n_out
``"bce"``  mean_k softplus(p_k) - p_k y_k      (sigmoid(p) - y) / n_out
``"ce"``   logsumexp(p) - sum_k y_k p_k        softmax(p) - y
=========  ==================================  ==================================

``"bce"`` takes logits and targets in [0, 1]; ``"ce"`` takes logits and a one-hot (or any
probability) target. Both are evaluated with max-shifted exponentials, so logits of any size give
finite values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # a numpy.ndarray or a torch.Tensor

__all__ = [
    "LOSSES",
    "Loss",
    "bce_with_logits",
    "bce_with_logits_grad",
    "get_loss",
    "mse",
    "mse_grad",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "NATS_PER_BIT",
]

NATS_PER_BIT = math.log(2.0)


def _is_numpy(x: Array) -> bool:
    return isinstance(x, np.ndarray | np.generic)


def _check(pred: Array, target: Array) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"prediction and target must have the same shape, got prediction {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    if len(pred.shape) == 0:
        raise ValueError("prediction must have at least one dimension (the output dimension last)")


def _namespace(x: Array) -> Any:
    """The array module of ``x``: numpy, or torch (imported only when a tensor is passed)."""
    if _is_numpy(x):
        return np
    import torch

    return torch


def _softplus(x: Array) -> Array:
    """log(1 + exp(x)) without overflow: relu(x) + log1p(exp(-|x|))."""
    xp = _namespace(x)
    return xp.clip(x, 0, None) + xp.log1p(xp.exp(-xp.abs(x)))


def _log_softmax(logits: Array) -> Array:
    """log softmax over the last axis, shifted by the max so no exponential overflows."""
    if _is_numpy(logits):
        shifted = logits - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return logits.log_softmax(-1)


def mse(pred: Array, target: Array) -> Array:
    """Mean squared error over the output dimension: mean_k (p_k - y_k)^2, shape ``(...)``."""
    _check(pred, target)
    return ((pred - target) ** 2).mean(-1)


def mse_grad(pred: Array, target: Array) -> Array:
    """Gradient of :func:`mse` with respect to ``pred``: 2 (p - y) / n_out, shape of ``pred``."""
    _check(pred, target)
    return 2.0 * (pred - target) / pred.shape[-1]


def bce_with_logits(logits: Array, target: Array) -> Array:
    """Binary cross-entropy of sigmoid(logits), mean over the output dimension, in nats.

    mean_k softplus(p_k) - p_k y_k, which equals -mean_k [y log s(p) + (1 - y) log(1 - s(p))].
    Shape ``(...)``.
    """
    _check(logits, target)
    return (_softplus(logits) - logits * target).mean(-1)


def bce_with_logits_grad(logits: Array, target: Array) -> Array:
    """Gradient of :func:`bce_with_logits`: (sigmoid(p) - y) / n_out, shape of ``logits``."""
    _check(logits, target)
    xp = _namespace(logits)
    sigmoid = xp.exp(-_softplus(-logits))
    return (sigmoid - target) / logits.shape[-1]


def softmax_cross_entropy(logits: Array, target: Array) -> Array:
    """Cross-entropy of softmax(logits) against a one-hot/probability target: -sum_k y_k log p_k.

    Shape ``(...)``.
    """
    _check(logits, target)
    return -(target * _log_softmax(logits)).sum(-1)


def softmax_cross_entropy_grad(logits: Array, target: Array) -> Array:
    """Gradient of :func:`softmax_cross_entropy` for a target summing to 1: softmax(p) - y."""
    _check(logits, target)
    xp = _namespace(logits)
    return xp.exp(_log_softmax(logits)) - target


@dataclass(frozen=True)
class Loss:
    """A per-step loss: ``value(pred, target) -> (...)`` and its ``gradient -> (..., n_out)``."""

    name: str
    value: Callable[[Array, Array], Array]
    gradient: Callable[[Array, Array], Array]
    description: str


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", mse, mse_grad, "mean squared error over the output dimension"),
    "bce": Loss(
        "bce",
        bce_with_logits,
        bce_with_logits_grad,
        "binary cross-entropy with logits, mean over output bits (nats)",
    ),
    "ce": Loss(
        "ce",
        softmax_cross_entropy,
        softmax_cross_entropy_grad,
        "softmax cross-entropy with logits against a one-hot target (nats)",
    ),
}


def get_loss(name: str) -> Loss:
    """Return the :class:`Loss` called ``name`` (one of ``"mse"``, ``"bce"``, ``"ce"``)."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
