"""In-place decay of large eligibility traces: ``e ← discount · M e``, tile by tile.

BP(lambda)'s traces hold ``B · d_out · |θ|`` numbers; a fresh ``M e`` per token would double
that memory and its traffic. :func:`decay_trace_` instead decays a preallocated trace in place,
in cache-sized tiles through a small scratch buffer, and can fuse the contraction with the TD
error into the same pass. :func:`allocate_traces` lays several traces side by side in one
buffer so that one decay serves them all. The pure (allocating) trace functions are in
:mod:`agents.traces`, which re-exports everything public here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeGuard

import torch

from agents.trace_checks import (
    Scalar,
    Transition,
    call_operator,
    check_tensor,
    check_trace_operator,
    per_batch,
    scaled_matrices,
)

__all__ = [
    "DECAY_SCRATCH_NUMEL",
    "DECAY_SCRATCH_NUMEL_ACCELERATOR",
    "BlockOperator",
    "TraceTransition",
    "allocate_traces",
    "decay_scratch",
    "decay_trace_",
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


TraceTransition = Transition | BlockOperator
"""What :func:`decay_trace_` accepts as ``M_t``: a ``Transition`` or a :class:`BlockOperator`."""

DECAY_SCRATCH_NUMEL = 2**20
"""Elements of the scratch tile :func:`decay_trace_` allocates on the CPU (4 MiB in float32):
small enough that each tile's product is copied back from cache, large enough that its matrix
product runs near the BLAS's full speed and the per-tile Python overhead stays small."""

DECAY_SCRATCH_NUMEL_ACCELERATOR = 2**24
"""The same off the CPU (e.g. CUDA), where kernel launches rather than caches set the tile."""


class _MatrixOperator:
    """A (B, d, d) tensor as a :class:`BlockOperator` (``discount · M`` formed once per call)."""

    def __init__(self, matrices: torch.Tensor) -> None:
        batch, d, _ = matrices.shape
        self.shape = (batch, d, d)
        self._matrices = matrices
        self._scaled: torch.Tensor | None = None

    def apply_block(
        self, e: torch.Tensor, out: torch.Tensor, rows: slice, scale: float
    ) -> torch.Tensor:
        if self._scaled is None:
            self._scaled = scaled_matrices(self._matrices, scale)
        if e.shape[0] == 1:  # one batch element: a plain GEMM reads a column block in place
            torch.mm(self._scaled[rows][0], e[0], out=out[0])
            return out
        return torch.bmm(self._scaled[rows], e, out=out)


def _is_block_operator(transition: object) -> TypeGuard[BlockOperator]:
    """A :class:`BlockOperator` (duck-typed: ``isinstance`` on a runtime Protocol costs ~10 µs,
    too much per token)."""
    return not isinstance(transition, torch.Tensor) and callable(
        getattr(transition, "apply_block", None)
    )


def _tile_numel(columns: torch.Tensor, scratch: torch.Tensor | None) -> int:
    """Elements per tile for a trace viewed as ``columns`` (B, d, P): the scratch's size."""
    if scratch is None:
        cap = (
            DECAY_SCRATCH_NUMEL
            if columns.device.type == "cpu"
            else (DECAY_SCRATCH_NUMEL_ACCELERATOR)
        )
        return min(cap, columns.numel())
    d = columns.shape[1]
    if (
        not isinstance(scratch, torch.Tensor)
        or scratch.dtype != columns.dtype
        or scratch.device != columns.device
        or not scratch.is_contiguous()
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
    check_tensor("delta_t", delta_t, ranks=(1, 2))
    if transition is not None and delta_t.dim() != 2:
        raise ValueError(
            f"with a transition_t, delta_t must have shape (B, d_out), got {tuple(delta_t.shape)}"
        )
    if e.shape[: delta_t.dim()] != delta_t.shape or e.dtype != delta_t.dtype:
        raise ValueError(
            f"e must start with delta_t's shape {tuple(delta_t.shape)} and share its dtype "
            f"{delta_t.dtype}, got {tuple(e.shape)}, {e.dtype}"
        )
    check_tensor("increment", increment)
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
        block.view(shape) for block, shape in zip(buffer.split(widths, dim=2), shapes, strict=True)
    ]
    return buffer, views


def decay_scratch(e: torch.Tensor) -> torch.Tensor:
    """The scratch buffer :func:`decay_trace_` allocates for traces like ``e`` (dtype, device,
    tile size): allocate it once and pass it as ``scratch=`` every step."""
    check_tensor("e", e)
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
    check_tensor("e", e)
    discount = per_batch("discount_t", discount_t, e)
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
    operator = (
        _MatrixOperator(transition_t) if isinstance(transition_t, torch.Tensor) else transition_t
    )
    if _is_block_operator(operator):
        if scratch is None:
            scratch = torch.empty(tile_numel, dtype=e.dtype, device=e.device)
        _decay_tiles_(columns, discount, operator, scratch, tile_numel, contract)
    else:
        _decay_column_blocks_(columns, discount, operator, tile_numel, contract)
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
    elif transition is None or isinstance(transition, torch.Tensor) or callable(transition):
        check_trace_operator("transition_t", e, transition)
    if not e.is_contiguous():
        raise ValueError("decay_trace_ with a transition_t needs a contiguous e")
    return e.view(e.shape[0], e.shape[1], -1)


def _decay_tiles_(
    columns: torch.Tensor,
    discount: Scalar,
    operator: BlockOperator,
    scratch: torch.Tensor,
    tile_numel: int,
    contract: _Contraction | None,
) -> None:
    """Per tile: ``M e`` into the scratch (a float discount folded in), contract, copy back."""
    scale = discount if isinstance(discount, float) else 1.0
    batch, d, width = columns.shape
    for rows, cols in _tiles(batch, d, width, tile_numel):
        block = columns[rows, :, cols]
        out = scratch[: block.numel()].view(block.shape)
        operator.apply_block(block, out, rows, scale)
        if not isinstance(discount, float):
            out.mul_(discount[rows])
        if contract is not None:
            contract(out, rows, cols)
        block.copy_(out)


def _decay_column_blocks_(
    columns: torch.Tensor,
    discount: Scalar,
    transition: object,
    tile_numel: int,
    contract: _Contraction | None,
) -> None:
    """A plain callable ``e ↦ M e`` sees every batch element, so blocks are column ranges."""
    batch, d, width = columns.shape
    block_width = max(1, tile_numel // (batch * d))
    for start in range(0, width, block_width):
        cols = slice(start, start + block_width)
        block = columns[:, :, cols]
        torch.mul(call_operator("transition_t", transition, block), discount, out=block)
        if contract is not None:
            contract(block, slice(None), cols)
