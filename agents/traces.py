"""TD errors, eligibility traces and lambda-returns: pure, batched functions over torch tensors.

One implementation serves two learners (see docs/algorithm.md#the-td-lambda-special-case):

- TD(lambda) (``agents/td_lambda.py``): scalar values ``v`` of shape ``(B,)``, no transition.
- BP(lambda) (``agents/bp_lambda.py``): the "value" is a row vector ``g(s)`` of shape ``(B, d)``
  and every step multiplies by a transition operator ``M_t`` (the Jacobian ``J_t``), given as a
  tensor ``(B, d, d)``, as a callable (an implicit product, so ``M_t`` is never built) or None
  for the identity. Traces then have shape ``(B, d, *param_shape)`` and ``M_t`` acts on axis 1.

With ``M_t`` the identity and ``d = 1`` the operator form reduces to the scalar form exactly.

The functions here return new tensors. Large traces are decayed in place instead, tile by tile
with the TD-error contraction fused, by :func:`decay_trace_` (which also takes a
:class:`BlockOperator`, e.g. a recurrent core's Jacobian operator); it lives with its helpers in
:mod:`agents.trace_decay` and is re-exported here, so ``agents.traces`` stays the one import.

Conventions: names carry their time index as in DeepMind's rlax (``v_tm1`` is the value of the
state being updated, ``r_t``, ``discount_t``, ``v_t`` come from the transition out of it);
``discount_t`` is 0 where an episode ends. Unlike rlax, whose functions take one transition or
one trajectory and are batched with ``jax.vmap``, these functions are batched themselves: the
batch is axis 0 (axis 1 after time for sequences). ``discount_t`` and ``alpha`` may be a float
or a tensor of shape ``()``, ``(1,)`` or ``(B,)`` (one value per batch element); tensors are
cast to the dtype of the data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agents.trace_checks import (
    Scalar,
    Transition,
    call_operator,
    check_like,
    check_matrix,
    check_tensor,
    check_trace_operator,
    per_batch,
    per_step,
    scaled_matrices,
)
from agents.trace_decay import (
    DECAY_SCRATCH_NUMEL,
    DECAY_SCRATCH_NUMEL_ACCELERATOR,
    BlockOperator,
    allocate_traces,
    decay_scratch,
    decay_trace_,
)

__all__ = [
    "DECAY_SCRATCH_NUMEL",
    "DECAY_SCRATCH_NUMEL_ACCELERATOR",
    "BlockOperator",
    "accumulating_trace",
    "allocate_traces",
    "decay_scratch",
    "decay_trace_",
    "dutch_trace",
    "lambda_returns",
    "replacing_trace",
    "td_error",
    "trace_increment",
    "true_online_td_update",
]


def _row_times(name: str, u: torch.Tensor, transition: Transition) -> torch.Tensor:
    """Row vectors times the transition: ``(u M)_k = sum_i u_i M_ik``; u (B, d) -> (B, d)."""
    if transition is None:
        return u
    if isinstance(transition, torch.Tensor):
        check_matrix(name, transition, u.shape[0], u.shape[1], u.dtype)
        return torch.bmm(u.unsqueeze(1), transition).squeeze(1)
    return call_operator(name, transition, u)


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
    check_tensor("v_tm1", v_tm1, ranks=(1, 2))
    check_like("r_t", r_t, "v_tm1", v_tm1)
    check_like("v_t", v_t, "v_tm1", v_tm1)
    if transition_t is not None and v_tm1.dim() != 2:
        raise ValueError(
            "transition_t needs the operator form: r_t, v_t, v_tm1 of shape (B, d), got "
            f"{tuple(v_tm1.shape)}"
        )
    discount = per_batch("discount_t", discount_t, v_t)
    target = (
        torch.add(r_t, v_t, alpha=discount) if isinstance(discount, float) else r_t + discount * v_t
    )
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
    check_tensor("e_tm1", e_tm1)
    check_like("grad_t", grad_t, "e_tm1", e_tm1)
    discount = per_batch("discount_t", discount_t, e_tm1)
    check_trace_operator("transition_t", e_tm1, transition_t)
    if transition_t is None:
        if isinstance(discount, float):
            return torch.add(grad_t, e_tm1, alpha=discount)
        return torch.addcmul(grad_t, e_tm1, discount)
    if isinstance(transition_t, torch.Tensor):
        batch, d = e_tm1.shape[:2]
        flat = torch.baddbmm(
            grad_t.reshape(batch, d, -1),
            scaled_matrices(transition_t, discount),
            e_tm1.reshape(batch, d, -1),
        )
        return flat.view(e_tm1.shape)
    return grad_t + discount * call_operator("transition_t", transition_t, e_tm1)


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
    check_tensor("e_tm1", e_tm1, ranks=(2,))
    check_like("x_t", x_t, "e_tm1", e_tm1)
    if not bool(((x_t == 0) | (x_t == 1)).all()):
        raise ValueError("replacing_trace needs binary features: x_t must hold only 0 and 1")
    discount = per_batch("discount_t", discount_t, e_tm1)
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
    check_tensor("e_tm1", e_tm1, ranks=(2,))
    check_like("x_t", x_t, "e_tm1", e_tm1)
    discount = per_batch("discount_t", discount_t, e_tm1)
    step = per_batch("alpha", alpha, e_tm1)
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
    check_tensor("delta_t", delta_t, ranks=(1, 2))
    check_tensor("e_t", e_t)
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
    check_tensor("w_t", w_t, ranks=(2,))
    check_like("z_t", z_t, "w_t", w_t)
    check_like("x_t", x_t, "w_t", w_t)
    check_tensor("v_t", v_t, ranks=(1,))
    for name, value in (("delta_t", delta_t), ("v_old_t", v_old_t)):
        check_like(name, value, "v_t", v_t)
    if v_t.shape[0] != w_t.shape[0] or v_t.dtype != w_t.dtype:
        raise ValueError(
            f"v_t must have shape ({w_t.shape[0]},) and dtype {w_t.dtype}, got "
            f"{tuple(v_t.shape)}, {v_t.dtype}"
        )
    step = per_batch("alpha", alpha, w_t)
    correction = (v_t - v_old_t).unsqueeze(1)
    return w_t + step * (delta_t.unsqueeze(1) + correction) * z_t - step * correction * x_t


# ----------------------------------------------------------------------------- forward view


def lambda_returns(
    r_t: torch.Tensor,
    discount_t: Scalar,
    v_t: torch.Tensor,
    lambda_: Scalar = 1.0,
    transition_t: torch.Tensor | Callable[[int, torch.Tensor], torch.Tensor] | None = None,
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
        transition_t: operator form only: ``(T, B, d, d)`` tensor, ``M_t`` multiplying row
            vectors from the right; or a callable ``(t, u) ↦ u · M_t`` on ``(B, d)`` row vectors
            (e.g. a recurrent core's ``vjp`` with the cache of step t, so no ``M_t`` is built);
            None for the identity.

    Returns:
        ``G``, shape of ``r_t``.
    """
    check_tensor("r_t", r_t)
    if r_t.dim() < 1:
        raise ValueError("r_t must have a time axis: shape (T,), (T, B) or (T, B, d), got ()")
    check_like("v_t", v_t, "r_t", r_t)
    discount = per_step("discount_t", discount_t, r_t)
    lam = per_step("lambda_", lambda_, r_t)
    if transition_t is not None:
        if r_t.dim() != 3:
            raise ValueError(
                f"transition_t needs the operator form: r_t of shape (T, B, d), got "
                f"{tuple(r_t.shape)}"
            )
    if isinstance(transition_t, torch.Tensor):
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
        if isinstance(transition_t, torch.Tensor):
            g = torch.bmm(g.unsqueeze(1), transition_t[t]).squeeze(1)
        elif transition_t is not None:
            g = call_operator("transition_t", lambda u, t=t: transition_t(t, u), g)
        returns.append(g)
    return torch.stack(returns[::-1])
