"""One-step parameter derivatives of a core, per sequence of the batch.

A core's ``local_vjp(cache, m)`` returns the batch sum Σ_b m_b (∂s'_b/∂θ)_local, which is all an
exact learner needs. The online approximations of RTRL (UORO, SnAp-1, e-prop) keep one estimate
per sequence, so they need the terms of that sum one by one: :func:`per_sequence_local_vjp`
computes them with ``torch.func.vmap`` over the core's own ``local_vjp``, so they come from the
same analytic derivatives every other learner uses (and work for any core whose ``local_vjp`` is
written in torch operations).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agents.cores import RecurrentCore

__all__ = ["per_sequence_local_vjp"]


def _add_batch_axis(tree: Any) -> Any:
    """Every tensor of a cache (a NamedTuple, tuple, list or dict of tensors) with a leading
    axis of size 1: inside ``vmap`` the batch axis is gone, and the core expects one."""
    if isinstance(tree, Tensor):
        return tree.unsqueeze(0)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_add_batch_axis(item) for item in tree))
    if isinstance(tree, tuple | list):
        return type(tree)(_add_batch_axis(item) for item in tree)
    if isinstance(tree, dict):
        return {key: _add_batch_axis(item) for key, item in tree.items()}
    return tree


def per_sequence_local_vjp(core: RecurrentCore, cache: Any, signals: Tensor) -> tuple[Tensor, ...]:
    """m_{b,k} · (∂s'_b/∂θ)_local for every sequence b and every signal k, the state held fixed.

    Args:
        core: the core that made ``cache``.
        cache: from ``core.step`` for B sequences.
        signals: (B, K, d) row vectors m_{b,k} (K signals per sequence).

    Returns:
        One (B, K, *θ.shape) tensor per core parameter, in ``core.parameters()`` order; summed
        over b and k it is ``core.local_vjp(cache, signals.sum(1))``.
    """
    if (
        not isinstance(signals, Tensor)
        or signals.dim() != 3
        or (signals.shape[2] != core.state_size)
    ):
        got = tuple(signals.shape) if isinstance(signals, Tensor) else type(signals).__name__
        raise ValueError(f"signals must be a (B, K, {core.state_size}) tensor, got {got}")

    def one_signal(cache_b: Any, m: Tensor) -> tuple[Tensor, ...]:
        return core.local_vjp(_add_batch_axis(cache_b), m.unsqueeze(0))

    every_signal = torch.func.vmap(one_signal, in_dims=(None, 0))
    return torch.func.vmap(every_signal, in_dims=(0, 0))(cache, signals)
