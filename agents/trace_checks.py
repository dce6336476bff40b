"""Input checks and operator plumbing shared by :mod:`agents.traces` (the pure TD/trace
functions) and :mod:`agents.trace_decay` (the in-place decay engine).

Errors follow the project's style: TypeError for a wrong type, ValueError for a wrong shape,
dtype or value, each naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch

__all__ = [
    "Scalar",
    "Transition",
    "call_operator",
    "check_like",
    "check_matrix",
    "check_tensor",
    "check_trace_operator",
    "per_batch",
    "per_step",
    "scaled_matrices",
]

Transition = torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None
"""A transition ``M_t``: a ``(B, d, d)`` tensor, a callable applying it, or None (identity)."""
Scalar = float | torch.Tensor
"""A discount or step size: a float or a tensor broadcastable over the batch."""


def check_tensor(name: str, x: object, ranks: tuple[int, ...] | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if ranks is not None and x.dim() not in ranks:
        raise ValueError(
            f"{name} must have rank {' or '.join(map(str, ranks))}, got shape {tuple(x.shape)}"
        )
    return x


def check_like(name: str, x: object, like_name: str, like: torch.Tensor) -> torch.Tensor:
    x = check_tensor(name, x)
    if x.shape != like.shape or x.dtype != like.dtype:
        raise ValueError(
            f"{name} must match {like_name} in shape and dtype ({tuple(like.shape)}, "
            f"{like.dtype}), got {tuple(x.shape)}, {x.dtype}"
        )
    return x


def per_batch(name: str, value: Scalar, like: torch.Tensor) -> Scalar:
    """A float, or a tensor viewed as (B, 1, ..., 1) to broadcast over ``like`` (B, ...)."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, torch.Tensor) or value.dtype == torch.bool:
        raise TypeError(f"{name} must be a float or a float tensor, got {value!r}")
    batch = like.shape[0]
    if value.dim() == 0:
        return value.to(device=like.device, dtype=like.dtype)
    if value.dim() != 1 or value.shape[0] not in (1, batch):
        raise ValueError(
            f"{name} must be a float or a tensor of shape (), (1,) or ({batch},) (the batch), "
            f"got shape {tuple(value.shape)}"
        )
    return value.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def per_step(name: str, value: Scalar, like: torch.Tensor) -> Scalar:
    """A float, or a tensor whose shape is a prefix of ``like``'s, viewed to broadcast over it."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, torch.Tensor) or value.dtype == torch.bool:
        raise TypeError(f"{name} must be a float or a float tensor, got {value!r}")
    if value.dim() > 0 and value.shape != like.shape[: value.dim()]:
        raise ValueError(
            f"{name} must be a float or a tensor whose shape is a prefix of {tuple(like.shape)} "
            f"(e.g. (T,) or (T, B)), got shape {tuple(value.shape)}"
        )
    trailing = [1] * (like.dim() - value.dim())
    return value.to(device=like.device, dtype=like.dtype).view(*value.shape, *trailing)


def check_matrix(name: str, m: torch.Tensor, batch: int, d: int, dtype: torch.dtype) -> None:
    check_tensor(name, m)
    if m.shape != (batch, d, d) or m.dtype != dtype:
        raise ValueError(
            f"{name} must be a tensor of shape ({batch}, {d}, {d}) and dtype {dtype} (one "
            f"d x d matrix per batch element), got {tuple(m.shape)}, {m.dtype}"
        )


def call_operator(name: str, operator: object, x: torch.Tensor) -> torch.Tensor:
    if not callable(operator):
        raise TypeError(
            f"{name} must be a torch.Tensor, a callable or None, got {type(operator).__name__}"
        )
    out = operator(x)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        got = f"{tuple(out.shape)}, {out.dtype}" if isinstance(out, torch.Tensor) else repr(out)
        raise ValueError(
            f"callable {name} must return a tensor of the shape and dtype it was given "
            f"({tuple(x.shape)}, {x.dtype}), got {got:.80}"
        )
    return out


def scaled_matrices(matrices: torch.Tensor, discount: Scalar) -> torch.Tensor:
    """``discount · M`` for (B, d, d) matrices (cheap: folds the discount into the small M)."""
    return matrices * (discount if isinstance(discount, float) else discount.view(-1, 1, 1))


def check_trace_operator(name: str, e: torch.Tensor, transition: Transition) -> None:
    if not isinstance(transition, torch.Tensor):
        return
    if e.dim() < 2:
        raise ValueError(
            f"with a tensor {name} the trace must have shape (B, d_out, *param_shape), got "
            f"{tuple(e.shape)}"
        )
    check_matrix(name, transition, e.shape[0], e.shape[1], e.dtype)
