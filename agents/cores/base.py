"""The interface every recurrent core implements, and the Jacobian operator it hands the learners.

A core is the transition s' = F(x, s; θ) of a batch of B sequences: x (B, n_in) the input token,
s (B, d) the state, of which the readout reads the H hidden units ``hidden(s)`` (B, H).
``forward(x, s)`` is plain differentiable torch (for predicting and for checking against
autograd). ``step(x, s)`` returns ``(s', cache)``; from the cache the core computes, without an
autograd graph, the derivative products the learners need:

============================  ==============================================  ================
method                        computes                                        shape
============================  ==============================================  ================
``jacobian(cache)``           J = ∂s'/∂s                                      (B, d, d)
``vjp(cache, v)``             v J, for row vectors v                          (B, d)
``jvp(cache, e)``             J e, J acting on axis 1 of e (times ``scale``)  (B, d, *rest)
``jacobian_operator(cache)``  J unbuilt, applied to any block of rows and      (b, d, p) blocks
                              columns of a (B, d, P) tensor, into a buffer
``local_vjp(cache, m)``       Σ_b m_b (∂s'_b/∂θ) with s held fixed            θ.shape, per θ
``local_jacobian(cache)``     ∂s'/∂θ with s held fixed (one step, no history) (B, d, *θ.shape)
``concat_caches(caches)``     the caches of several steps as one batch        a cache
============================  ==============================================  ================

θ runs over ``parameters()`` in order: ``local_vjp`` and ``local_jacobian`` return one tensor per
parameter in that order. The derivative methods run under ``torch.no_grad()``: their results
carry no autograd graph. :class:`RecurrentCore` validates the arguments of every public method
once and dispatches to the private hooks a subclass implements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agents.grad_mode import no_grad
from bpl_envs.checks import check_int

__all__ = ["DenseJacobianOperator", "JacobianOperator", "RecurrentCore", "check_tensor"]


def check_tensor(
    name: str,
    value: object,
    shape: tuple[int | None, ...],
    dtype: torch.dtype,
    *,
    more_dims: bool = False,
) -> None:
    """Require a tensor of ``dtype`` with the given sizes (None: any size); ``more_dims`` allows
    further trailing dimensions."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    rank_ok = value.dim() >= len(shape) if more_dims else value.dim() == len(shape)
    if not rank_ok or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=False)
    ):
        wanted = ", ".join("any" if size is None else str(size) for size in shape)
        wanted += ", ..." if more_dims else ""
        raise ValueError(f"{name} must have shape ({wanted}), got {tuple(value.shape)}")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have the parameters' dtype {dtype}, got {value.dtype}")


def check_out(out: object, e: Tensor) -> None:
    """Require ``out`` to be a contiguous buffer shaped like ``e``, not sharing its memory."""
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
    if out.shape != e.shape or out.dtype != e.dtype:
        raise ValueError(
            f"out must match e: shape {tuple(e.shape)} and dtype {e.dtype}, got shape "
            f"{tuple(out.shape)} and dtype {out.dtype}"
        )
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    if out.untyped_storage().data_ptr() == e.untyped_storage().data_ptr():
        raise ValueError("out must not share memory with e (J e cannot be computed in place)")


class JacobianOperator(ABC):
    """J = ∂s'/∂s of one step for B states, applied to blocks of (B, d, P) tensors unbuilt.

    Built once per step by ``core.jacobian_operator(cache)`` (O(B·d²) work at most), then applied
    to as many blocks of a trace as the caller likes: :meth:`apply_block` computes
    ``out = scale · J[rows] e`` for the batch elements ``rows`` and any subset of the P columns,
    writing into a caller-owned buffer. :func:`agents.traces.decay_trace_` uses this to decay a
    trace in place, one cache-sized block at a time.

    Attributes:
        shape: (B, d, d), the shape J would have.
        dtype, device: those of the core's parameters.
    """

    def __init__(self, batch_size: int, state_size: int, like: Tensor) -> None:
        self.shape = (batch_size, state_size, state_size)
        self.dtype, self.device = like.dtype, like.device
        self._scale: float | None = None

    @no_grad
    def apply_block(
        self, e: Tensor, out: Tensor, rows: slice = slice(None), scale: float = 1.0
    ) -> Tensor:
        """out ← scale · J[rows] e, J acting on axis 1 of e.

        Args:
            e: (b, d, p) block of a (B, d, P) tensor: batch elements ``rows``, any p columns, any
                strides (a column slice of a contiguous trace is read in place).
            out: (b, d, p) contiguous buffer of e's dtype, not overlapping e.
            rows: the slice of range(B) that e's batch elements are (step 1).
            scale: a factor folded into the product.

        Returns:
            ``out``.
        """
        batch, d, _ = self.shape
        start, stop, step = rows.indices(batch)
        if step != 1:
            raise ValueError(f"rows must be a slice with step 1, got {rows}")
        if not isinstance(e, Tensor) or e.dim() != 3 or e.shape[:2] != (stop - start, d):
            got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise ValueError(
                f"e must be a (b, d, p) tensor with b = {stop - start} (rows {start}:{stop}) and "
                f"d = {d}, got {got}"
            )
        if e.dtype != self.dtype:
            raise TypeError(f"e must have the parameters' dtype {self.dtype}, got {e.dtype}")
        check_out(out, e)
        if scale != self._scale:
            self._rescale(float(scale))
            self._scale = scale
        return self._apply(e, out, slice(start, stop))

    @abstractmethod
    def _rescale(self, scale: float) -> None:
        """Prepare the scaled per-step factors (called when ``scale`` changes)."""

    @abstractmethod
    def _apply(self, e: Tensor, out: Tensor, rows: slice) -> Tensor:
        """out ← scale · J[rows] e with checked arguments."""


class DenseJacobianOperator(JacobianOperator):
    """J held as B dense (d, d) matrices, formed per scale by ``matrices(scale)`` (which returns
    scale · J, (B, d, d), folding the scale into however J is built); applied by one batched
    GEMM, B·d²·p multiply-adds per (B, d, p) block."""

    def __init__(
        self, matrices: Callable[[float], Tensor], batch_size: int, state_size: int, like: Tensor
    ) -> None:
        super().__init__(batch_size, state_size, like)
        self._build = matrices

    def _rescale(self, scale: float) -> None:
        self._matrices = self._build(scale)

    def _apply(self, e: Tensor, out: Tensor, rows: slice) -> Tensor:
        if e.shape[0] == 1:  # one batch element: a plain GEMM reads a column block in place
            torch.mm(self._matrices[rows][0], e[0], out=out[0])
            return out
        return torch.bmm(self._matrices[rows], e, out=out)


def _concatenate(items: Sequence[Any]) -> Any:
    """Concatenate same-shaped caches along the batch: tensors by ``torch.cat``, (named) tuples
    field by field."""
    first = items[0]
    if isinstance(first, Tensor):
        return torch.cat(list(items))
    fields = [_concatenate(group) for group in zip(*items, strict=True)]
    return type(first)(*fields) if hasattr(first, "_fields") else type(first)(fields)


class RecurrentCore(nn.Module, ABC):
    """A batched recurrent transition s' = F(x, s; θ) with one-step derivative products.

    Subclasses set ``cache_type`` (a NamedTuple whose tensors are all (B, ...), possibly nested in
    tuples) and implement ``state_size`` and the private hooks; the public methods here validate
    their arguments once and dispatch. The hidden units the readout reads are the state columns
    ``hidden_columns`` (the first H by default).

    Args:
        input_size: n_in.
        hidden_size: H, the number of hidden units the readout reads.
    """

    cache_type: type

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)

    @property
    @abstractmethod
    def state_size(self) -> int:
        """d, the width of the state s."""

    @property
    def hidden_columns(self) -> slice:
        """The columns of the state s (B, d) that hold the hidden units: the first H."""
        return slice(0, self.hidden_size)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"

    def _like(self) -> Tensor:
        """A parameter whose dtype and device every tensor argument must have."""
        return next(self.parameters())

    # ----------------------------------------------------------------- states and transition
    def initial_state(self, batch_size: int) -> Tensor:
        """Zeros of shape (batch_size, d), with the parameters' dtype and device."""
        check_int("batch_size", batch_size, minimum=1)
        like = self._like()
        return torch.zeros(batch_size, self.state_size, dtype=like.dtype, device=like.device)

    def hidden(self, s: Tensor) -> Tensor:
        """The hidden units h of state s (B, d): a (B, H) view of its ``hidden_columns``."""
        check_tensor("s", s, (None, self.state_size), self._like().dtype)
        return s[:, self.hidden_columns]

    def state_gradient(self, hidden_gradient: Tensor) -> Tensor:
        """A gradient with respect to the hidden units (B, H) as one with respect to the state
        (B, d): zero outside ``hidden_columns``."""
        if self.state_size == self.hidden_size:
            return hidden_gradient
        gradient = hidden_gradient.new_zeros(hidden_gradient.shape[0], self.state_size)
        gradient[:, self.hidden_columns] = hidden_gradient
        return gradient

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """s' = F(x, s): x (B, n_in), s (B, d) → (B, d); differentiable torch operations."""
        self._check_step_inputs(x, s)
        return self._forward(x, s)

    def step(self, x: Tensor, s: Tensor) -> tuple[Tensor, Any]:
        """One transition and the cache of its derivatives.

        Args:
            x: (B, n_in) input.
            s: (B, d) previous state.

        Returns:
            s_next: (B, d), equal to ``forward(x, s)``.
            cache: this core's ``cache_type`` (see its docstring).
        """
        self._check_step_inputs(x, s)
        return self._step(x, s)

    # ----------------------------------------------------------------- derivative products
    @no_grad
    def jacobian(self, cache: Any) -> Tensor:
        """J = ∂s'/∂s, dense: (B, d, d), J[b, k, j] = ∂s'_{b,k}/∂s_{b,j}."""
        self._check_cache(cache)
        return self._jacobian(cache)

    @no_grad
    def vjp(self, cache: Any, v: Tensor) -> Tensor:
        """v J for row vectors v (B, d) → (B, d), without building J."""
        self._check_cache(cache)
        check_tensor("v", v, (self._batch_size(cache), self.state_size), self._like().dtype)
        return self._vjp(cache, v)

    @no_grad
    def jvp(
        self, cache: Any, e: Tensor, *, scale: float = 1.0, out: Tensor | None = None
    ) -> Tensor:
        """scale · J e, J acting on axis 1 of e, without building J.

        Args:
            cache: from ``step``.
            e: (B, d, *rest), e.g. eligibility traces (B, d_out, *param_shape). A contiguous e is
                read in place; any other layout is copied once.
            scale: a factor folded into the product (e.g. γλ of a trace decay) at no extra cost.
            out: optional preallocated (B, d, *rest) contiguous result, not sharing memory with e.

        Returns:
            (B, d, *rest), ``out`` itself when given.
        """
        operator = self.jacobian_operator(cache)
        batch, d = operator.shape[:2]
        check_tensor("e", e, (batch, d), self._like().dtype, more_dims=True)
        if out is None:
            out = torch.empty(e.shape, dtype=e.dtype, device=e.device)
        else:
            check_out(out, e)
        operator.apply_block(e.reshape(batch, d, -1), out.view(batch, d, -1), scale=scale)
        return out

    @no_grad
    def jacobian_operator(self, cache: Any) -> JacobianOperator:
        """J = ∂s'/∂s as an operator: ``apply_block(e, out, rows, scale)`` computes scale · J e
        for any block of rows and columns of a (B, d, P) tensor into a given buffer (see
        :class:`JacobianOperator`). Building it costs at most O(B·d²)."""
        self._check_cache(cache)
        return self._jacobian_operator(cache)

    @no_grad
    def local_vjp(self, cache: Any, m: Tensor) -> tuple[Tensor, ...]:
        """Σ_b m_b (∂s'_b/∂θ)_local for a learning signal m (B, d), s held fixed.

        Returns:
            one gradient per parameter, in ``parameters()`` order, shaped like it.
        """
        self._check_cache(cache)
        check_tensor("m", m, (self._batch_size(cache), self.state_size), self._like().dtype)
        return self._local_vjp(cache, m)

    @no_grad
    def local_jacobian(self, cache: Any) -> tuple[Tensor, ...]:
        """Dense (∂s'/∂θ)_local, s held fixed: one (B, d, *θ.shape) tensor per parameter, in
        ``parameters()`` order."""
        self._check_cache(cache)
        return self._local_jacobian(cache)

    def concat_caches(self, caches: Sequence[Any]) -> Any:
        """The caches of several steps as one cache of their concatenated batches, so that one
        ``local_vjp`` sums the local gradients of all the steps (as BPTT does over a chunk)."""
        if not caches:
            raise ValueError("caches must hold at least one cache, got none")
        for cache in caches:
            self._check_cache(cache)
        return caches[0] if len(caches) == 1 else _concatenate(caches)

    # ----------------------------------------------------------------- hooks for subclasses
    @abstractmethod
    def _forward(self, x: Tensor, s: Tensor) -> Tensor:
        """s' with checked arguments, differentiable."""

    @abstractmethod
    def _step(self, x: Tensor, s: Tensor) -> tuple[Tensor, Any]:
        """(s', cache) with checked arguments."""

    def _batch_size(self, cache: Any) -> int:
        """B of a cache (every built-in cache but the stacked one stores the input x)."""
        return cache.x.shape[0]

    @abstractmethod
    def _jacobian(self, cache: Any) -> Tensor: ...

    @abstractmethod
    def _vjp(self, cache: Any, v: Tensor) -> Tensor: ...

    @abstractmethod
    def _jacobian_operator(self, cache: Any) -> JacobianOperator: ...

    @abstractmethod
    def _local_vjp(self, cache: Any, m: Tensor) -> tuple[Tensor, ...]: ...

    @abstractmethod
    def _local_jacobian(self, cache: Any) -> tuple[Tensor, ...]: ...

    # ----------------------------------------------------------------- argument checks
    def _check_step_inputs(self, x: Tensor, s: Tensor) -> None:
        dtype = self._like().dtype
        check_tensor("x", x, (None, self.input_size), dtype)
        check_tensor("s", s, (x.shape[0], self.state_size), dtype)

    def _check_cache(self, cache: object) -> None:
        if not isinstance(cache, self.cache_type):
            raise TypeError(
                f"cache must be the {self.cache_type.__name__} returned by "
                f"{type(self).__name__}.step, got {type(cache).__name__}"
            )
