"""TD errors, eligibility traces and lambda-returns: pure, batched functions over torch tensors.

One implementation serves two learners (see ALGORITHM.md):

- TD(lambda) (``agents/td_lambda.py``): scalar values ``v`` of shape ``(B,)``, no transition.
- BP(lambda) (``agents/bp_lambda.py``): the "value" is a row vector ``g(s)`` of shape ``(B, d)``
  and every step multiplies by a transition operator ``M_t`` (the Jacobian ``J_t``), given as a
  tensor ``(B, d, d)``, as a callable (an implicit product, so ``M_t`` is never built) or None
  for the identity. Traces then have shape ``(B, d, *param_shape)`` and ``M_t`` acts on axis 1.

With ``M_t`` the identity and ``d = 1`` the operator form reduces to the scalar form exactly.

Conventions (as in DeepMind's rlax): the batch is axis 0 (axis 1 after time for sequences);
names carry their time index (``v_tm1`` is the value of the state being updated, ``r_t``,
``discount_t``, ``v_t`` come from the transition out of it); ``discount_t`` is 0 where an
episode ends. ``discount_t`` and ``alpha`` may be a float or a tensor of shape ``()``, ``(1,)``
or ``(B,)`` (one value per batch element); tensors are cast to the dtype of the data.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch

__all__ = [
    "DECAY_SCRATCH_NUMEL",
    "accumulating_trace",
    "decay_trace_",
    "dutch_trace",
    "lambda_returns",
    "replacing_trace",
    "td_error",
    "trace_increment",
    "true_online_td_update",
]

Transition = torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None
Scalar = float | torch.Tensor

DECAY_SCRATCH_NUMEL = 2**22
"""Size (elements) of the scratch buffer :func:`decay_trace_` allocates for a tensor transition."""


# ----------------------------------------------------------------------------- input checks


def _check_tensor(name: str, x: object, ranks: tuple[int, ...] | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if ranks is not None and x.dim() not in ranks:
        raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))}, got shape "
                         f"{tuple(x.shape)}")
    return x


def _check_like(name: str, x: object, like_name: str, like: torch.Tensor) -> torch.Tensor:
    _check_tensor(name, x)
    if x.shape != like.shape or x.dtype != like.dtype:
        raise ValueError(
            f"{name} must match {like_name} in shape and dtype ({tuple(like.shape)}, "
            f"{like.dtype}), got {tuple(x.shape)}, {x.dtype}"
        )
    return x


def _per_batch(name: str, value: Scalar, like: torch.Tensor) -> Scalar:
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


def _per_step(name: str, value: Scalar, like: torch.Tensor) -> Scalar:
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


def _check_matrix(name: str, m: torch.Tensor, batch: int, d: int, dtype: torch.dtype) -> None:
    _check_tensor(name, m)
    if m.shape != (batch, d, d) or m.dtype != dtype:
        raise ValueError(
            f"{name} must be a tensor of shape ({batch}, {d}, {d}) and dtype {dtype} (one "
            f"d x d matrix per batch element), got {tuple(m.shape)}, {m.dtype}"
        )


def _call_operator(name: str, operator: Callable, x: torch.Tensor) -> torch.Tensor:
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


def _row_times(name: str, u: torch.Tensor, transition: Transition) -> torch.Tensor:
    """Row vectors times the transition: ``(u M)_k = sum_i u_i M_ik``; u (B, d) -> (B, d)."""
    if transition is None:
        return u
    if isinstance(transition, torch.Tensor):
        _check_matrix(name, transition, u.shape[0], u.shape[1], u.dtype)
        return torch.bmm(u.unsqueeze(1), transition).squeeze(1)
    return _call_operator(name, transition, u)


def _scaled(matrices: torch.Tensor, discount: Scalar) -> torch.Tensor:
    """``discount · M`` for (B, d, d) matrices (cheap: folds the discount into the small M)."""
    return matrices * (discount if isinstance(discount, float) else discount.view(-1, 1, 1))


def _check_trace_operator(name: str, e: torch.Tensor, transition: Transition) -> None:
    if not isinstance(transition, torch.Tensor):
        return
    if e.dim() < 2:
        raise ValueError(
            f"with a tensor {name} the trace must have shape (B, d_out, *param_shape), got "
            f"{tuple(e.shape)}"
        )
    _check_matrix(name, transition, e.shape[0], e.shape[1], e.dtype)


# ----------------------------------------------------------------------------- TD errors


def td_error(
    r_t: torch.Tensor,
    v_t: torch.Tensor,
    v_tm1: torch.Tensor,
    discount_t: Scalar,
    transition_t: Transition = None,
) -> torch.Tensor:
    """TD error of the state at t-1: ``δ_tm1 = (r_t + discount_t · v_t) · M_t − v_tm1``.

    Args:
        r_t: rewards, shape ``(B,)`` (scalar form) or ``(B, d)`` (operator form, row vectors;
            for BP(lambda) the immediate loss gradient ``l_t``).
        v_t: values of the next states, same shape (ignored where ``discount_t`` is 0).
        v_tm1: values of the states being updated, same shape.
        discount_t: float or tensor broadcastable to ``(B,)``; 0 where the episode ended.
        transition_t: operator form only: ``(B, d, d)`` tensor ``M`` applied as
            ``δ_k = Σ_i u_i M_ik``, or a callable ``u ↦ u·M`` on ``(B, d)`` tensors, or None
            (identity).

    Returns:
        ``δ_tm1``, shape of ``v_tm1``.
    """
    _check_tensor("v_tm1", v_tm1, ranks=(1, 2))
    _check_like("r_t", r_t, "v_tm1", v_tm1)
    _check_like("v_t", v_t, "v_tm1", v_tm1)
    if transition_t is not None and v_tm1.dim() != 2:
        raise ValueError(
            "transition_t needs the operator form: r_t, v_t, v_tm1 of shape (B, d), got "
            f"{tuple(v_tm1.shape)}"
        )
    target = r_t + _per_batch("discount_t", discount_t, v_t) * v_t
    return _row_times("transition_t", target, transition_t) - v_tm1


# ----------------------------------------------------------------------------- traces


def accumulating_trace(
    e_tm1: torch.Tensor,
    grad_t: torch.Tensor,
    discount_t: Scalar,
    transition_t: Transition = None,
) -> torch.Tensor:
    """Accumulating trace: ``e_t = discount_t · M_t e_tm1 + grad_t`` (a new tensor).

    For TD(lambda) ``discount_t = γλ`` (0 at an episode's first step) and ``grad_t = ∇v(s_t)``;
    for BP(lambda) ``M_t = J_t`` (the Jacobian into ``s_t``) and ``grad_t = ∂g(s_t)/∂θ``.

    Args:
        e_tm1: previous trace, ``(B, *param_shape)`` (scalar form) or
            ``(B, d_out, *param_shape)`` (operator form).
        grad_t: gradient of the current value, same shape and dtype.
        discount_t: float or tensor broadcastable to ``(B,)``.
        transition_t: ``(B, d_out, d_out)`` tensor acting on axis 1
            (``e_t[b] = M_t[b] @ e_tm1[b]``), a callable ``e ↦ M e`` on trace-shaped tensors,
            or None (identity).

    Returns:
        ``e_t``, shape of ``e_tm1``.
    """
    _check_tensor("e_tm1", e_tm1)
    _check_like("grad_t", grad_t, "e_tm1", e_tm1)
    discount = _per_batch("discount_t", discount_t, e_tm1)
    _check_trace_operator("transition_t", e_tm1, transition_t)
    if transition_t is None:
        if isinstance(discount, float):
            return torch.add(grad_t, e_tm1, alpha=discount)
        return torch.addcmul(grad_t, e_tm1, discount)
    if isinstance(transition_t, torch.Tensor):
        batch, d = e_tm1.shape[:2]
        flat = torch.baddbmm(
            grad_t.reshape(batch, d, -1), _scaled(transition_t, discount),
            e_tm1.reshape(batch, d, -1),
        )
        return flat.view(e_tm1.shape)
    return grad_t + discount * _call_operator("transition_t", transition_t, e_tm1)


def decay_trace_(
    e: torch.Tensor,
    discount_t: Scalar,
    transition_t: Transition = None,
    *,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decay a trace in place: ``e ← discount_t · M_t e``; returns ``e``.

    For large preallocated traces: the caller adds the new gradient afterwards (e.g. with an
    in-place outer product), so the gradient is never materialised at trace size. Memory:

    - ``M_t`` None: one in-place multiply, nothing allocated.
    - ``M_t`` a tensor: a matrix product cannot write into its own operand, so the batch is
      processed in blocks of whole batch elements (contiguous slices ``e[b0:b1]``): each block's
      ``M_t @ e`` goes to a scratch buffer and is copied back. The scratch holds at most
      :data:`DECAY_SCRATCH_NUMEL` elements (or one batch element if that is larger), or is the
      ``scratch`` you pass (reuse one across steps to skip the allocation); never a second
      full-size trace unless the whole trace fits in it. ``discount_t`` is folded into ``M_t``.
    - ``M_t`` a callable: its result (a new tensor) is scaled into ``e`` (one pass).

    Args:
        e: trace, ``(B, *param_shape)`` or ``(B, d_out, *param_shape)``; contiguous when
            ``transition_t`` is a tensor.
        discount_t: float or tensor broadcastable to ``(B,)``.
        transition_t: ``(B, d_out, d_out)`` tensor acting on axis 1, callable ``e ↦ M e``, or
            None (identity).
        scratch: optional buffer for a tensor ``transition_t``: a contiguous tensor of ``e``'s
            dtype and device with at least ``e[0].numel()`` elements (its size sets how many
            batch elements go per block).

    Returns:
        ``e`` itself, decayed.
    """
    _check_tensor("e", e)
    discount = _per_batch("discount_t", discount_t, e)
    _check_trace_operator("transition_t", e, transition_t)
    if transition_t is None:
        return e.mul_(discount)
    if not isinstance(transition_t, torch.Tensor):
        return torch.mul(_call_operator("transition_t", transition_t, e), discount, out=e)
    if not e.is_contiguous():
        raise ValueError("decay_trace_ with a tensor transition_t needs a contiguous e")
    batch, d = e.shape[:2]
    per_element = e[0].numel()
    if scratch is None:
        scratch = torch.empty(
            max(1, min(batch, DECAY_SCRATCH_NUMEL // per_element)) * per_element,
            dtype=e.dtype, device=e.device,
        )
    elif (
        not isinstance(scratch, torch.Tensor) or scratch.dtype != e.dtype
        or scratch.device != e.device or not scratch.is_contiguous()
        or scratch.numel() < per_element
    ):
        raise ValueError(
            f"scratch must be a contiguous {e.dtype} tensor on {e.device} with at least "
            f"{per_element} elements (one batch element of e), got {scratch!r:.80}"
        )
    block = scratch.numel() // per_element
    scaled = _scaled(transition_t, discount)
    columns = e.view(batch, d, -1)
    for start in range(0, batch, block):
        chunk = columns[start : start + block]
        out = scratch.view(-1)[: chunk.numel()].view(chunk.shape)
        torch.bmm(scaled[start : start + block], chunk, out=out)
        chunk.copy_(out)
    return e


def replacing_trace(e_tm1: torch.Tensor, x_t: torch.Tensor, discount_t: Scalar) -> torch.Tensor:
    """Replacing trace for binary features: ``e_t = discount_t · e_tm1 · (1 − x_t) + x_t``.

    Active components are set to 1, the others decay.

    Args:
        e_tm1: previous trace, ``(B, n_features)``.
        x_t: binary features of the current state (values 0 or 1), same shape and dtype.
        discount_t: float or tensor broadcastable to ``(B,)`` (``γλ``).

    Returns:
        ``e_t``, ``(B, n_features)``.
    """
    _check_tensor("e_tm1", e_tm1, ranks=(2,))
    _check_like("x_t", x_t, "e_tm1", e_tm1)
    if not bool(((x_t == 0) | (x_t == 1)).all()):
        raise ValueError("replacing_trace needs binary features: x_t must hold only 0 and 1")
    discount = _per_batch("discount_t", discount_t, e_tm1)
    return discount * e_tm1 * (1.0 - x_t) + x_t


def dutch_trace(
    e_tm1: torch.Tensor, x_t: torch.Tensor, discount_t: Scalar, alpha: Scalar
) -> torch.Tensor:
    """Dutch trace: ``e_t = discount_t · e_tm1 + (1 − alpha · discount_t · e_tm1ᵀx_t) x_t``.

    The trace of true online TD(lambda) (van Seijen & Sutton 2014; Sutton & Barto eq. 12.11).

    Args:
        e_tm1: previous trace, ``(B, n_features)``.
        x_t: features of the current state, same shape and dtype.
        discount_t: float or tensor broadcastable to ``(B,)`` (``γλ``).
        alpha: step size, float or tensor broadcastable to ``(B,)``.

    Returns:
        ``e_t``, ``(B, n_features)``.
    """
    _check_tensor("e_tm1", e_tm1, ranks=(2,))
    _check_like("x_t", x_t, "e_tm1", e_tm1)
    discount = _per_batch("discount_t", discount_t, e_tm1)
    step = _per_batch("alpha", alpha, e_tm1)
    overlap = (e_tm1 * x_t).sum(dim=1, keepdim=True)
    return discount * e_tm1 + (1.0 - step * discount * overlap) * x_t


# ----------------------------------------------------------------------------- updates


def trace_increment(delta_t: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """Parameter increment per batch element: ``Δθ_t = δ_t · e_t``, contracted over ``d``.

    Args:
        delta_t: TD errors, ``(B,)`` (scalar form) or ``(B, d)`` (operator form).
        e_t: traces, ``(B, *param_shape)`` or ``(B, d, *param_shape)``.

    Returns:
        ``(B, *param_shape)``: ``δ[b] e[b]``, or ``Σ_k δ[b, k] e[b, k]`` in operator form.
        Multiply by a step size (and average over the batch) to update θ.
    """
    _check_tensor("delta_t", delta_t, ranks=(1, 2))
    _check_tensor("e_t", e_t)
    if e_t.shape[: delta_t.dim()] != delta_t.shape or e_t.dtype != delta_t.dtype:
        raise ValueError(
            f"e_t must start with delta_t's shape {tuple(delta_t.shape)} and share its dtype "
            f"{delta_t.dtype}, got {tuple(e_t.shape)}, {e_t.dtype}"
        )
    if delta_t.dim() == 1:
        return delta_t.view(-1, *([1] * (e_t.dim() - 1))) * e_t
    batch, d = delta_t.shape
    flat = torch.bmm(delta_t.unsqueeze(1), e_t.reshape(batch, d, -1))
    return flat.view(batch, *e_t.shape[2:])


def true_online_td_update(
    w_t: torch.Tensor,
    z_t: torch.Tensor,
    x_t: torch.Tensor,
    delta_t: torch.Tensor,
    v_t: torch.Tensor,
    v_old_t: torch.Tensor,
    alpha: Scalar,
) -> torch.Tensor:
    """True online TD(λ): ``w_tp1 = w_t + α(δ_t + v_t − v_old_t) z_t − α(v_t − v_old_t) x_t``.

    Sutton & Barto (2nd ed.) §12.5: ``v_t = w_tᵀx_t``, ``δ_t = r_tp1 + γ w_tᵀx_tp1 − v_t``,
    ``z_t`` the :func:`dutch_trace`, ``v_old_t = w_tm1ᵀx_t`` (the previous step's next-state
    value, 0 at an episode's first step).

    Args:
        w_t: weights, ``(B, n_features)``.
        z_t: dutch trace after including ``x_t``, same shape.
        x_t: features of the current state, same shape.
        delta_t, v_t, v_old_t: ``(B,)``.
        alpha: step size, float or tensor broadcastable to ``(B,)``.

    Returns:
        ``w_tp1``, ``(B, n_features)``.
    """
    _check_tensor("w_t", w_t, ranks=(2,))
    _check_like("z_t", z_t, "w_t", w_t)
    _check_like("x_t", x_t, "w_t", w_t)
    _check_tensor("v_t", v_t, ranks=(1,))
    for name, value in (("delta_t", delta_t), ("v_old_t", v_old_t)):
        _check_like(name, value, "v_t", v_t)
    if v_t.shape[0] != w_t.shape[0] or v_t.dtype != w_t.dtype:
        raise ValueError(
            f"v_t must have shape ({w_t.shape[0]},) and dtype {w_t.dtype}, got "
            f"{tuple(v_t.shape)}, {v_t.dtype}"
        )
    step = _per_batch("alpha", alpha, w_t)
    correction = (v_t - v_old_t).unsqueeze(1)
    return w_t + step * (delta_t.unsqueeze(1) + correction) * z_t - step * correction * x_t


# ----------------------------------------------------------------------------- forward view


def lambda_returns(
    r_t: torch.Tensor,
    discount_t: Scalar,
    v_t: torch.Tensor,
    lambda_: Scalar = 1.0,
    transition_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """λ-returns of a trajectory: ``G_t = (r_t + discount_t[(1−λ_t)v_t + λ_t G_{t+1}]) M_t``.

    Time-major, as rlax's ``lambda_returns``: index ``t`` holds the target for the state at
    ``t − 1``; the recursion starts from ``G_T = v_T`` (the last value bootstraps the tail), so
    the last entry is ``(r_T + discount_T v_T) M_T``.

    Args:
        r_t: rewards, ``(T,)``, ``(T, B)``, or ``(T, B, d)`` in operator form.
        discount_t: float, or tensor whose shape is a prefix of ``r_t``'s (e.g. ``(T,)`` or
            ``(T, B)``); 0 where an episode ends.
        v_t: values of the states reached, shape of ``r_t``.
        lambda_: float, or tensor whose shape is a prefix of ``r_t``'s.
        transition_t: operator form only, ``(T, B, d, d)``: ``M_t`` multiplies row vectors from
            the right; None for the identity.

    Returns:
        ``G``, shape of ``r_t``.
    """
    _check_tensor("r_t", r_t)
    if r_t.dim() < 1:
        raise ValueError("r_t must have a time axis: shape (T,), (T, B) or (T, B, d), got ()")
    _check_like("v_t", v_t, "r_t", r_t)
    discount = _per_step("discount_t", discount_t, r_t)
    lam = _per_step("lambda_", lambda_, r_t)
    if transition_t is not None:
        if r_t.dim() != 3:
            raise ValueError(
                f"transition_t needs the operator form: r_t of shape (T, B, d), got "
                f"{tuple(r_t.shape)}"
            )
        _check_tensor("transition_t", transition_t)
        if transition_t.shape != (*r_t.shape, r_t.shape[2]) or transition_t.dtype != r_t.dtype:
            raise ValueError(
                f"transition_t must have shape {(*r_t.shape, r_t.shape[2])} and dtype "
                f"{r_t.dtype}, got {tuple(transition_t.shape)}, {transition_t.dtype}"
            )

    def at(value: Scalar, t: int) -> Scalar:
        return value if isinstance(value, float) or value.dim() == 0 else value[t]

    g = v_t[-1]
    returns = []
    for t in reversed(range(r_t.shape[0])):
        lam_t = at(lam, t)
        g = r_t[t] + at(discount, t) * ((1.0 - lam_t) * v_t[t] + lam_t * g)
        if transition_t is not None:
            g = torch.bmm(g.unsqueeze(1), transition_t[t]).squeeze(1)
        returns.append(g)
    return torch.stack(returns[::-1])
