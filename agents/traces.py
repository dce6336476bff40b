"""TD errors, eligibility traces and lambda-returns: pure, batched functions over torch tensors.

One implementation serves two learners (see docs/algorithm.md#the-td-lambda-special-case):

- TD(lambda) (``agents/td_lambda.py``): scalar values ``v`` of shape ``(B,)``, no transition.
- BP(lambda) (``agents/bp_lambda.py``): the "value" is a row vector ``g(s)`` of shape ``(B, d)``
  and every step multiplies by a transition operator ``M_t`` (the Jacobian ``J_t``), given as a
  tensor ``(B, d, d)``, as a callable (an implicit product, so ``M_t`` is never built) or None
  for the identity. Traces then have shape ``(B, d, *param_shape)`` and ``M_t`` acts on axis 1;
  :func:`decay_trace_` also takes a :class:`BlockOperator` (e.g. a recurrent core's Jacobian
  operator) and decays large traces in place, tile by tile, fusing the TD-error contraction.

With ``M_t`` the identity and ``d = 1`` the operator form reduces to the scalar form exactly.

Conventions (as in DeepMind's rlax): the batch is axis 0 (axis 1 after time for sequences);
names carry their time index (``v_tm1`` is the value of the state being updated, ``r_t``,
``discount_t``, ``v_t`` come from the transition out of it); ``discount_t`` is 0 where an
episode ends. ``discount_t`` and ``alpha`` may be a float or a tensor of shape ``()``, ``(1,)``
or ``(B,)`` (one value per batch element); tensors are cast to the dtype of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from numbers import Real
from typing import Protocol

import torch

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


class BlockOperator(Protocol):
    """A batch of transitions ``M`` (B, d, d) that multiplies any block of a trace, unbuilt.

    :class:`agents.cores.JacobianOperator` (from ``core.jacobian_operator(cache)``) is one.
    """

    shape: tuple[int, int, int]
    """(B, d, d)."""

    def apply_block(
        self, e: torch.Tensor, out: torch.Tensor, rows: slice, scale: float
    ) -> torch.Tensor:
        """``out ← scale · M[rows] e`` for a ``(b, d, p)`` block ``e`` (batch elements ``rows``,
        any columns, any strides) into a contiguous ``(b, d, p)`` buffer ``out``."""
        ...


Transition = torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None
TraceTransition = Transition | BlockOperator
Scalar = float | torch.Tensor

DECAY_SCRATCH_NUMEL = 2**20
"""Elements of the scratch tile :func:`decay_trace_` allocates on the CPU (4 MiB in float32):
small enough that each tile's product is copied back from cache, large enough that its matrix
product runs near the BLAS's full speed and the per-tile Python overhead stays small."""

DECAY_SCRATCH_NUMEL_ACCELERATOR = 2**24
"""The same off the CPU (e.g. CUDA), where kernel launches rather than caches set the tile."""


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
    discount = _per_batch("discount_t", discount_t, v_t)
    target = (torch.add(r_t, v_t, alpha=discount) if isinstance(discount, float)
              else r_t + discount * v_t)
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


class _MatrixOperator:
    """A (B, d, d) tensor as a :class:`BlockOperator` (``discount · M`` formed once per call)."""

    def __init__(self, matrices: torch.Tensor) -> None:
        self.shape, self._matrices, self._scaled = tuple(matrices.shape), matrices, None

    def apply_block(
        self, e: torch.Tensor, out: torch.Tensor, rows: slice, scale: float
    ) -> torch.Tensor:
        if self._scaled is None:
            self._scaled = _scaled(self._matrices, scale)
        if e.shape[0] == 1:  # one batch element: a plain GEMM reads a column block in place
            torch.mm(self._scaled[rows][0], e[0], out=out[0])
            return out
        return torch.bmm(self._scaled[rows], e, out=out)


def _is_block_operator(transition: object) -> bool:
    """A :class:`BlockOperator` (duck-typed: ``isinstance`` on a runtime Protocol costs ~10 µs,
    too much per token)."""
    return not isinstance(transition, torch.Tensor) and callable(
        getattr(transition, "apply_block", None)
    )


def _tile_numel(columns: torch.Tensor, scratch: torch.Tensor | None) -> int:
    """Elements per tile for a trace viewed as ``columns`` (B, d, P): the scratch's size."""
    if scratch is None:
        cap = DECAY_SCRATCH_NUMEL if columns.device.type == "cpu" else (
            DECAY_SCRATCH_NUMEL_ACCELERATOR
        )
        return min(cap, columns.numel())
    d = columns.shape[1]
    if (
        not isinstance(scratch, torch.Tensor) or scratch.dtype != columns.dtype
        or scratch.device != columns.device or not scratch.is_contiguous()
        or scratch.numel() < d
    ):
        raise ValueError(
            f"scratch must be a contiguous {columns.dtype} tensor on {columns.device} with at "
            f"least {d} elements (one column of one batch element of e), got {scratch!r:.80}"
        )
    return scratch.numel()


def _tiles(batch: int, d: int, width: int, tile_numel: int) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) slices covering a (batch, d, width) tensor, each tile <= tile_numel
    elements: even runs of whole batch elements if one fits, else even column blocks of one."""
    per_element = d * width
    if per_element <= tile_numel:
        runs = math.ceil(batch / (tile_numel // per_element))
        size = math.ceil(batch / runs)
        for start in range(0, batch, size):
            yield slice(start, min(start + size, batch)), slice(None)
        return
    blocks = math.ceil(width / max(1, tile_numel // d))
    size = math.ceil(width / blocks)
    for b in range(batch):
        for start in range(0, width, size):
            yield slice(b, b + 1), slice(start, start + size)


class _Contraction:
    """``increment += Σ_b Σ_k δ[b, k] e[b, k, cols]`` for tiles ``e[rows, :, cols]`` (b, d, w)."""

    def __init__(self, delta: torch.Tensor, increment: torch.Tensor) -> None:
        self.width = increment.numel()
        self._delta = delta.reshape(delta.shape[0], 1, -1)  # (B, 1, d)
        self._increment = increment.view(1, self.width)

    def __call__(self, tile: torch.Tensor, rows: slice, cols: slice) -> None:
        delta = self._delta[rows]
        if tile.shape[0] == 1:
            self._increment[:, cols].addmm_(delta[0], tile[0])
        else:
            self._increment[:, cols].addmm_(delta.reshape(1, -1), tile.reshape(-1, tile.shape[2]))


def _check_contraction(
    e: torch.Tensor,
    delta_t: torch.Tensor | None,
    increment: torch.Tensor | None,
    transition: TraceTransition,
) -> _Contraction | None:
    if delta_t is None and increment is None:
        return None
    if delta_t is None or increment is None:
        raise ValueError("delta_t and increment go together: give both or neither")
    _check_tensor("delta_t", delta_t, ranks=(1, 2))
    if transition is not None and delta_t.dim() != 2:
        raise ValueError(
            f"with a transition_t, delta_t must have shape (B, d_out), got {tuple(delta_t.shape)}"
        )
    if e.shape[: delta_t.dim()] != delta_t.shape or e.dtype != delta_t.dtype:
        raise ValueError(
            f"e must start with delta_t's shape {tuple(delta_t.shape)} and share its dtype "
            f"{delta_t.dtype}, got {tuple(e.shape)}, {e.dtype}"
        )
    _check_tensor("increment", increment)
    param_shape = e.shape[delta_t.dim() :]
    if increment.shape != param_shape or increment.dtype != e.dtype:
        raise ValueError(
            f"increment must have the parameter shape {tuple(param_shape)} and dtype {e.dtype}, "
            f"got {tuple(increment.shape)}, {increment.dtype}"
        )
    if not increment.is_contiguous():
        raise ValueError("increment must be contiguous")
    return _Contraction(delta_t, increment)


def allocate_traces(
    shapes: Sequence[tuple[int, ...]], *, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Zeroed traces that share their ``(B, d_out)`` axes, stored side by side in one buffer.

    The trace of shape ``(B, d_out, *param_shape_k)`` is a view of columns
    ``[P_0 + … + P_{k−1}, P_0 + … + P_k)`` of a contiguous ``(B, d_out, Σ_k P_k)`` buffer
    (``P_k`` = prod(param_shape_k)). A transition acts on axis 1 of every trace alike, so one
    :func:`decay_trace_` of the buffer (and one contraction with a TD error) serves them all.

    Args:
        shapes: the trace shapes, all starting with the same ``(B, d_out)``.
        dtype, device: of the buffer.

    Returns:
        ``(buffer, traces)``: the ``(B, d_out, P)`` buffer and one view per shape.
    """
    shapes = [tuple(shape) for shape in shapes]
    if not shapes or any(len(shape) < 2 or shape[:2] != shapes[0][:2] for shape in shapes):
        raise ValueError(
            f"shapes must be a non-empty list of trace shapes (B, d_out, *param_shape) with the "
            f"same (B, d_out), got {shapes}"
        )
    widths = [math.prod(shape[2:]) for shape in shapes]
    buffer = torch.zeros(*shapes[0][:2], sum(widths), dtype=dtype, device=device)
    views = [
        block.view(shape)
        for block, shape in zip(buffer.split(widths, dim=2), shapes, strict=True)
    ]
    return buffer, views


def decay_scratch(e: torch.Tensor) -> torch.Tensor:
    """The scratch buffer :func:`decay_trace_` allocates for traces like ``e`` (dtype, device,
    tile size): allocate it once and pass it as ``scratch=`` every step."""
    _check_tensor("e", e)
    if e.dim() < 2:
        raise ValueError(f"e must have shape (B, d_out, *param_shape), got {tuple(e.shape)}")
    return torch.empty(
        _tile_numel(e.view(e.shape[0], e.shape[1], -1), None), dtype=e.dtype, device=e.device
    )


def decay_trace_(
    e: torch.Tensor,
    discount_t: Scalar,
    transition_t: TraceTransition = None,
    *,
    scratch: torch.Tensor | None = None,
    delta_t: torch.Tensor | None = None,
    increment: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decay a trace in place: ``e ← discount_t · M_t e``; returns ``e``.

    For large preallocated traces: the caller adds the new gradient afterwards (e.g. with an
    in-place outer product), so the gradient is never materialised at trace size. A matrix
    product cannot write into its own operand, so with a transition the trace, viewed as
    ``(B, d, P)``, is processed in tiles: each tile's ``M_t e`` goes to a small scratch buffer
    and is copied back while still in cache. Tiles are whole batch elements when one fits in the
    scratch, else column blocks of one batch element (``M_t`` acts on axis 1 only, so columns are
    independent). Memory: one scratch of at most :data:`DECAY_SCRATCH_NUMEL` elements
    (``DECAY_SCRATCH_NUMEL_ACCELERATOR`` off the CPU), or the ``scratch`` you pass; never a
    second trace.

    - ``M_t`` None: one in-place multiply, nothing allocated.
    - ``M_t`` a tensor or a :class:`BlockOperator` (e.g. a core's ``jacobian_operator``): tiles
      as above; ``discount_t`` is folded into the product when it is a float.
    - ``M_t`` a plain callable ``e ↦ M e``: it is called on ``(B, d, p)`` column blocks of the
      trace (every batch element, ``p`` columns, strided views), and each result it returns is
      scaled into its block: the allocations are block-sized.

    With ``delta_t`` and ``increment`` it also accumulates the batch-summed
    :func:`trace_increment` of the decayed trace, ``increment += Σ_b Σ_k δ_t[b, k] e[b, k]``,
    tile by tile while each tile is still in cache: no second pass over the trace. (For
    BP(lambda)'s ``δ_t · e_t`` with ``e_t = decayed + ∂g_t/∂θ``, add ``δ_t · ∂g_t/∂θ`` apart.)

    Args:
        e: trace, ``(B, *param_shape)`` or ``(B, d_out, *param_shape)``, contiguous when
            ``transition_t`` is given.
        discount_t: float or tensor broadcastable to ``(B,)``.
        transition_t: ``(B, d_out, d_out)`` tensor acting on axis 1, a :class:`BlockOperator`,
            a callable ``e ↦ M e`` on ``(B, d_out, p)`` blocks, or None (identity).
        scratch: optional buffer for the tiles (reuse one across steps to skip the allocation):
            a contiguous tensor of ``e``'s dtype and device with at least ``d_out`` elements (one
            column of one batch element); its size sets the tile size.
        delta_t: optional ``(B, d_out)`` (operator form) or ``(B,)`` TD errors to contract the
            decayed trace with; needs ``increment``.
        increment: ``param_shape`` accumulator of ``e``'s dtype, added to in place.

    Returns:
        ``e`` itself, decayed.
    """
    _check_tensor("e", e)
    discount = _per_batch("discount_t", discount_t, e)
    contract = _check_contraction(e, delta_t, increment, transition_t)
    if transition_t is None:
        e.mul_(discount)
        if contract is not None:
            contract(e.view(e.shape[0], -1, contract.width), slice(None), slice(None))
        return e
    columns = _trace_columns(e, transition_t)
    if isinstance(discount, torch.Tensor):
        discount = discount.view(-1, 1, 1)
    tile_numel = _tile_numel(columns, scratch)
    if isinstance(transition_t, torch.Tensor):
        transition_t = _MatrixOperator(transition_t)
    if _is_block_operator(transition_t):
        if scratch is None:
            scratch = torch.empty(tile_numel, dtype=e.dtype, device=e.device)
        _decay_tiles_(columns, discount, transition_t, scratch, tile_numel, contract)
    else:
        _decay_column_blocks_(columns, discount, transition_t, tile_numel, contract)
    return e


def _trace_columns(e: torch.Tensor, transition: TraceTransition) -> torch.Tensor:
    """Check that ``transition`` can act on axis 1 of ``e``; return e as a (B, d, P) view."""
    if e.dim() < 2:
        raise ValueError(
            "with a transition_t the trace must have shape (B, d_out, *param_shape), got "
            f"{tuple(e.shape)}"
        )
    if _is_block_operator(transition):
        if tuple(transition.shape) != (e.shape[0], e.shape[1], e.shape[1]):
            raise ValueError(
                f"transition_t must act on the trace's axis 1: shape ({e.shape[0]}, {e.shape[1]}, "
                f"{e.shape[1]}), got an operator of shape {tuple(transition.shape)}"
            )
    else:
        _check_trace_operator("transition_t", e, transition)
    if not e.is_contiguous():
        raise ValueError("decay_trace_ with a transition_t needs a contiguous e")
    return e.view(e.shape[0], e.shape[1], -1)


def _decay_tiles_(columns, discount, operator, scratch, tile_numel, contract) -> None:
    """Per tile: ``M e`` into the scratch (a float discount folded in), contract, copy back."""
    scale = discount if isinstance(discount, float) else 1.0
    for rows, cols in _tiles(*columns.shape, tile_numel):
        block = columns[rows, :, cols]
        out = scratch[: block.numel()].view(block.shape)
        operator.apply_block(block, out, rows, scale)
        if not isinstance(discount, float):
            out.mul_(discount[rows])
        if contract is not None:
            contract(out, rows, cols)
        block.copy_(out)


def _decay_column_blocks_(columns, discount, transition, tile_numel, contract) -> None:
    """A plain callable ``e ↦ M e`` sees every batch element, so blocks are column ranges."""
    batch, d, width = columns.shape
    block_width = max(1, tile_numel // (batch * d))
    for start in range(0, width, block_width):
        cols = slice(start, start + block_width)
        block = columns[:, :, cols]
        torch.mul(_call_operator("transition_t", transition, block), discount, out=block)
        if contract is not None:
            contract(block, slice(None), cols)


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
            g = _call_operator("transition_t", lambda u, t=t: transition_t(t, u), g)
        returns.append(g)
    return torch.stack(returns[::-1])
