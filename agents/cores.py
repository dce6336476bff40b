"""Recurrent cores with analytic derivatives: the transition s' = F(x, s; θ) that BP(λ) and its
baselines train.

Symbols: B batch, n_in input size, H hidden units, d state size (d = H for the RNN, d = 2H for the
LSTM, whose state is the joint s = [h, c]), G·H rows of the weight matrices (G = 1 gate for the RNN,
4 for the LSTM).

``forward(x, s)`` is plain differentiable torch (for BPTT and for checking against autograd).
``step(x, s)`` returns ``(s', cache)``; from the cache every core computes, analytically and
without autograd, the derivative products the learners need:

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
============================  ==============================================  ================

The derivative methods run under ``torch.no_grad()``: their results carry no autograd graph.
Parameters are ``weight_ih (G·H, n_in)``, ``weight_hh (G·H, H)``, ``bias (G·H,)`` in that order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bpl_envs.checks import check_int

__all__ = [
    "CORE_KINDS",
    "JacobianOperator",
    "RNN_ACTIVATIONS",
    "LSTMCore",
    "LSTMStepCache",
    "RNNCore",
    "RNNStepCache",
    "RecurrentCore",
    "make_core",
]

CORE_KINDS = ("rnn", "lstm")
RNN_ACTIVATIONS = ("tanh", "identity")


def _check_tensor(
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


class RNNStepCache(NamedTuple):
    """What :class:`RNNCore`'s analytic derivatives need from one step s' = f(W_ih x + W_hh s + b).

    Attributes:
        x: (B, n_in) the input of the step.
        h_prev: (B, H) the previous state s (the input of W_hh).
        slope: (B, H) f'(a), the activation's derivative at the pre-activation a.
    """

    x: Tensor
    h_prev: Tensor
    slope: Tensor


class LSTMStepCache(NamedTuple):
    """What :class:`LSTMCore`'s analytic derivatives need from one step (gate order i, f, g, o).

    With a = W_ih x + W_hh h + b, c' = σ(f)⊙c + σ(i)⊙tanh(g) and h' = σ(o)⊙tanh(c'):

    Attributes:
        x: (B, n_in) the input of the step.
        h_prev: (B, H) the previous hidden state h (the input of W_hh).
        gate_slopes: (B, 4H) elementwise [∂c'/∂a_i, ∂c'/∂a_f, ∂c'/∂a_g, ∂h'/∂a_o]
            = [σ'(i)·tanh(g), σ'(f)·c, σ(i)·tanh'(g), σ'(o)·tanh(c')].
        forget: (B, H) σ(f) = ∂c'/∂c (a diagonal).
        cell_to_hidden: (B, H) σ(o)·tanh'(c') = ∂h'/∂c' (a diagonal).
    """

    x: Tensor
    h_prev: Tensor
    gate_slopes: Tensor
    forget: Tensor
    cell_to_hidden: Tensor


StepCache = RNNStepCache | LSTMStepCache


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

    @torch.no_grad()
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
        RecurrentCore._check_out(out, e)
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


class _RNNJacobianOperator(JacobianOperator):
    """J = diag(f'(a)) W_hh, formed per step as B scaled copies of W_hh (O(B·H²), folding
    scale · f'(a) into the product so that no separate row-scaling pass over e is needed)."""

    def __init__(self, weight_hh: Tensor, slope: Tensor) -> None:
        super().__init__(slope.shape[0], slope.shape[1], weight_hh)
        self._weight, self._slope = weight_hh, slope

    def _rescale(self, scale: float) -> None:
        row_scale = self._slope if scale == 1.0 else self._slope * scale
        self._matrices = row_scale[:, :, None] * self._weight  # (B, H, H)

    def _apply(self, e: Tensor, out: Tensor, rows: slice) -> Tensor:
        if e.shape[0] == 1:  # one batch element: a plain GEMM reads a column block in place
            torch.mm(self._matrices[rows][0], e[0], out=out[0])
            return out
        return torch.bmm(self._matrices[rows], e, out=out)


class _LSTMJacobianOperator(JacobianOperator):
    """J = [∂s'/∂h | diagonal c-paths]: one GEMM with the dense (B, 2H, H) block ∂s'/∂h (built
    once per step, scaled in place), then the two diagonals ∂c'/∂c = σ(f) and
    ∂h'/∂c = σ(o)tanh'(c')σ(f)."""

    def __init__(
        self, build_hidden_columns: Callable[[], Tensor], forget: Tensor, cell_to_hidden: Tensor
    ) -> None:
        super().__init__(forget.shape[0], 2 * forget.shape[1], forget)
        self._build_hidden_columns = build_hidden_columns
        self._forget, self._cell_to_hidden = forget, cell_to_hidden

    def _rescale(self, scale: float) -> None:
        block = self._build_hidden_columns()  # fresh: scaled in place, no second copy
        self._block = block if scale == 1.0 else block.mul_(scale)
        carry_c = self._forget * scale
        self._carry_c, self._carry_h = (
            carry_c[:, :, None],
            (carry_c * self._cell_to_hidden)[:, :, None],
        )

    def _apply(self, e: Tensor, out: Tensor, rows: slice) -> Tensor:
        H = self.shape[1] // 2
        e_h, e_c = e[:, :H], e[:, H:]
        if e.shape[0] == 1:  # one batch element: a plain GEMM reads a column block in place
            torch.mm(self._block[rows][0], e_h[0], out=out[0])
        else:
            torch.bmm(self._block[rows], e_h, out=out)
        out[:, H:].addcmul_(e_c, self._carry_c[rows])
        out[:, :H].addcmul_(e_c, self._carry_h[rows])
        return out


class RecurrentCore(nn.Module, ABC):
    """A batched recurrent transition s' = F(x, s; θ) with analytic one-step derivatives.

    Subclasses set ``num_gates`` and ``cache_type`` and implement the private hooks; the public
    methods here validate their arguments once and dispatch.
    """

    num_gates: int
    cache_type: type

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        rows = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    @property
    @abstractmethod
    def state_size(self) -> int:
        """d, the width of the state s."""

    def reset_parameters(self) -> None:
        """Draw every parameter from U(−1/√H, 1/√H), as torch's recurrent layers do."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"

    # ----------------------------------------------------------------- states and transition
    def initial_state(self, batch_size: int) -> Tensor:
        """Zeros of shape (batch_size, d), with the parameters' dtype and device."""
        check_int("batch_size", batch_size, minimum=1)
        like = self.weight_hh
        return torch.zeros(batch_size, self.state_size, dtype=like.dtype, device=like.device)

    def hidden(self, s: Tensor) -> Tensor:
        """The hidden units h of state s (B, d): a (B, H) view of its first H columns."""
        _check_tensor("s", s, (None, self.state_size), self.weight_hh.dtype)
        return s[:, : self.hidden_size]

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """s' = F(x, s): x (B, n_in), s (B, d) → (B, d); differentiable torch operations."""
        self._check_step_inputs(x, s)
        return self._transition(x, s)[0]

    def step(self, x: Tensor, s: Tensor) -> tuple[Tensor, StepCache]:
        """One transition and the cache of its analytic derivatives.

        Args:
            x: (B, n_in) input.
            s: (B, d) previous state.

        Returns:
            s_next: (B, d), equal to ``forward(x, s)``.
            cache: this core's ``cache_type`` (see its docstring).
        """
        self._check_step_inputs(x, s)
        s_next, activations = self._transition(x, s)
        return s_next, self._make_cache(x, s, s_next, activations)

    # ----------------------------------------------------------------- derivative products
    @torch.no_grad()
    def jacobian(self, cache: StepCache) -> Tensor:
        """J = ∂s'/∂s, dense: (B, d, d), J[b, k, j] = ∂s'_{b,k}/∂s_{b,j}."""
        self._check_cache(cache)
        return self._jacobian(cache)

    @torch.no_grad()
    def vjp(self, cache: StepCache, v: Tensor) -> Tensor:
        """v J for row vectors v (B, d) → (B, d), without building J."""
        self._check_cache(cache)
        _check_tensor("v", v, (cache.x.shape[0], self.state_size), self.weight_hh.dtype)
        return self._vjp(cache, v)

    @torch.no_grad()
    def jvp(
        self, cache: StepCache, e: Tensor, *, scale: float = 1.0, out: Tensor | None = None
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
        _check_tensor("e", e, (batch, d), self.weight_hh.dtype, more_dims=True)
        if out is None:
            out = torch.empty(e.shape, dtype=e.dtype, device=e.device)
        else:
            self._check_out(out, e)
        operator.apply_block(e.reshape(batch, d, -1), out.view(batch, d, -1), scale=scale)
        return out

    @torch.no_grad()
    def jacobian_operator(self, cache: StepCache) -> JacobianOperator:
        """J = ∂s'/∂s as an operator: ``apply_block(e, out, rows, scale)`` computes scale · J e
        for any block of rows and columns of a (B, d, P) tensor into a given buffer (see
        :class:`JacobianOperator`). Building it costs at most O(B·d²)."""
        self._check_cache(cache)
        return self._jacobian_operator(cache)

    @torch.no_grad()
    def local_vjp(self, cache: StepCache, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Σ_b m_b (∂s'_b/∂θ)_local for a learning signal m (B, d), s held fixed.

        Returns:
            (grad_weight_ih, grad_weight_hh, grad_bias), shaped like the parameters.
        """
        self._check_cache(cache)
        _check_tensor("m", m, (cache.x.shape[0], self.state_size), self.weight_hh.dtype)
        adjoint = self._preactivation_vjp(cache, m)  # (B, G·H): m · ∂s'/∂a
        return adjoint.T @ cache.x, adjoint.T @ cache.h_prev, adjoint.sum(0)

    @torch.no_grad()
    def local_jacobian(self, cache: StepCache) -> tuple[Tensor, Tensor, Tensor]:
        """Dense (∂s'/∂θ)_local, s held fixed: one (B, d, *θ.shape) tensor per parameter."""
        self._check_cache(cache)
        ds_da = self._preactivation_jacobian(cache)[..., None]  # (B, d, G·H, 1)
        return (
            ds_da * cache.x[:, None, None, :],
            ds_da * cache.h_prev[:, None, None, :],
            ds_da[..., 0],
        )

    # ----------------------------------------------------------------- hooks for subclasses
    def _preactivation(self, x: Tensor, h: Tensor) -> Tensor:
        """a = W_ih x + W_hh h + b: (B, G·H)."""
        return torch.addmm(self.bias, x, self.weight_ih.T).addmm_(h, self.weight_hh.T)

    @abstractmethod
    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(s', the activations ``_make_cache`` needs)."""

    @abstractmethod
    def _make_cache(
        self, x: Tensor, s: Tensor, s_next: Tensor, activations: tuple[Tensor, ...]
    ) -> StepCache: ...

    @abstractmethod
    def _jacobian(self, cache: StepCache) -> Tensor: ...

    @abstractmethod
    def _vjp(self, cache: StepCache, v: Tensor) -> Tensor: ...

    @abstractmethod
    def _jacobian_operator(self, cache: StepCache) -> JacobianOperator: ...

    @abstractmethod
    def _preactivation_vjp(self, cache: StepCache, m: Tensor) -> Tensor:
        """m · ∂s'/∂a: (B, d) → (B, G·H)."""

    @abstractmethod
    def _preactivation_jacobian(self, cache: StepCache) -> Tensor:
        """∂s'/∂a, dense: (B, d, G·H)."""

    # ----------------------------------------------------------------- argument checks
    def _check_step_inputs(self, x: Tensor, s: Tensor) -> None:
        dtype = self.weight_hh.dtype
        _check_tensor("x", x, (None, self.input_size), dtype)
        _check_tensor("s", s, (x.shape[0], self.state_size), dtype)

    def _check_cache(self, cache: object) -> None:
        if not isinstance(cache, self.cache_type):
            raise TypeError(
                f"cache must be the {self.cache_type.__name__} returned by "
                f"{type(self).__name__}.step, got {type(cache).__name__}"
            )

    @staticmethod
    def _check_out(out: object, e: Tensor) -> None:
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


class RNNCore(RecurrentCore):
    """Vanilla RNN: s' = f(W_ih x + W_hh s + b), f = tanh or identity; state s = h, d = H.

    Jacobian J = diag(f'(a)) W_hh; local derivatives f'(a)⊗x, f'(a)⊗s, f'(a).
    ``jvp`` on e (B, H, P) costs B·H²·P multiply-adds (one batched GEMM with the B row-scaled
    copies scale·diag(f'(a)) W_hh, which cost B·H² to form).

    Args:
        input_size: n_in.
        hidden_size: H.
        activation: "tanh" (as ``torch.nn.RNNCell``) or "identity" (a linear RNN).
    """

    num_gates = 1
    cache_type = RNNStepCache

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        if activation not in RNN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {RNN_ACTIVATIONS}, got {activation!r}")
        super().__init__(input_size, hidden_size)
        self.activation = activation

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"

    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        a = self._preactivation(x, s)
        return (torch.tanh(a) if self.activation == "tanh" else a), ()

    def _make_cache(
        self,
        x: Tensor,
        s: Tensor,
        s_next: Tensor,
        activations: tuple[Tensor, ...],  # noqa: ARG002 (the RNN's cache needs none)
    ) -> RNNStepCache:
        slope = 1.0 - s_next.square() if self.activation == "tanh" else torch.ones_like(s_next)
        return RNNStepCache(x=x, h_prev=s, slope=slope)

    def _jacobian(self, cache: RNNStepCache) -> Tensor:
        return cache.slope[:, :, None] * self.weight_hh

    def _vjp(self, cache: RNNStepCache, v: Tensor) -> Tensor:
        return (v * cache.slope) @ self.weight_hh

    def _jacobian_operator(self, cache: RNNStepCache) -> JacobianOperator:
        return _RNNJacobianOperator(self.weight_hh, cache.slope)

    def _preactivation_vjp(self, cache: RNNStepCache, m: Tensor) -> Tensor:
        return m * cache.slope

    def _preactivation_jacobian(self, cache: RNNStepCache) -> Tensor:
        return torch.diag_embed(cache.slope)


class LSTMCore(RecurrentCore):
    """LSTM on the joint state s = [h, c] (d = 2H), gates in torch's order i, f, g, o.

    a = W_ih x + W_hh h + b;  c' = σ(f)⊙c + σ(i)⊙tanh(g);  h' = σ(o)⊙tanh(c').
    Weights copy over from ``torch.nn.LSTM`` / ``torch.nn.LSTMCell`` with b = b_ih + b_hh.

    The Jacobian has every path: ∂h'/∂h through all four gates (the output gate included),
    ∂c'/∂h through i, f, g, and the diagonals ∂c'/∂c = σ(f), ∂h'/∂c = σ(o)tanh'(c')σ(f).
    ``jvp`` on e (B, 2H, P) costs 2·B·H²·P multiply-adds (one batched GEMM with the (B, 2H, H)
    block ∂s'/∂h) plus 2·B·H·P (the two diagonal c-paths) plus about 6·B·H² to build the block.

    Args:
        input_size: n_in.
        hidden_size: H.
    """

    num_gates = 4
    cache_type = LSTMStepCache

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        H = self.hidden_size
        h, c = s[:, :H], s[:, H:]
        a = self._preactivation(x, h)
        input_gate = torch.sigmoid(a[:, :H])
        forget_gate = torch.sigmoid(a[:, H : 2 * H])
        candidate = torch.tanh(a[:, 2 * H : 3 * H])
        output_gate = torch.sigmoid(a[:, 3 * H :])
        c_next = forget_gate * c + input_gate * candidate
        tanh_c_next = torch.tanh(c_next)
        h_next = output_gate * tanh_c_next
        activations = (c, input_gate, forget_gate, candidate, output_gate, tanh_c_next)
        return torch.cat((h_next, c_next), dim=1), activations

    def _make_cache(
        self,
        x: Tensor,
        s: Tensor,
        s_next: Tensor,  # noqa: ARG002 (the LSTM's cache is built from the activations)
        activations: tuple[Tensor, ...],
    ) -> LSTMStepCache:
        c, input_gate, forget_gate, candidate, output_gate, tanh_c_next = activations
        gate_slopes = torch.cat(
            (
                input_gate * (1.0 - input_gate) * candidate,
                forget_gate * (1.0 - forget_gate) * c,
                input_gate * (1.0 - candidate.square()),
                output_gate * (1.0 - output_gate) * tanh_c_next,
            ),
            dim=1,
        )
        return LSTMStepCache(
            x=x,
            h_prev=s[:, : self.hidden_size],
            gate_slopes=gate_slopes,
            forget=forget_gate,
            cell_to_hidden=output_gate * (1.0 - tanh_c_next.square()),
        )

    def _hidden_columns(self, cache: LSTMStepCache) -> Tensor:
        """∂s'/∂h, the dense first H columns of J: (B, 2H, H), O(B·H²) work."""
        H = self.hidden_size
        slopes = cache.gate_slopes.view(-1, 4, H, 1)
        weights = self.weight_hh.view(4, H, H)
        dc_dh = (slopes[:, :3] * weights[:3]).sum(dim=1)
        dh_dh = slopes[:, 3] * weights[3] + cache.cell_to_hidden[:, :, None] * dc_dh
        return torch.cat((dh_dh, dc_dh), dim=1)

    def _jacobian(self, cache: LSTMStepCache) -> Tensor:
        H = self.hidden_size
        jacobian = cache.forget.new_zeros(cache.forget.shape[0], 2 * H, 2 * H)
        jacobian[:, :, :H] = self._hidden_columns(cache)
        jacobian[:, :H, H:].diagonal(dim1=1, dim2=2).copy_(cache.cell_to_hidden * cache.forget)
        jacobian[:, H:, H:].diagonal(dim1=1, dim2=2).copy_(cache.forget)
        return jacobian

    def _adjoints(self, cache: LSTMStepCache, v: Tensor) -> tuple[Tensor, Tensor]:
        """For row vectors v = [v_h, v_c] (B, 2H): (v · ∂s'/∂a (B, 4H), v · ∂s'/∂c' (B, H))."""
        H = self.hidden_size
        v_h, v_c = v[:, :H], v[:, H:]
        cell_adjoint = v_c + v_h * cache.cell_to_hidden
        gate_adjoint = cache.gate_slopes * torch.cat((cell_adjoint,) * 3 + (v_h,), dim=1)
        return gate_adjoint, cell_adjoint

    def _vjp(self, cache: LSTMStepCache, v: Tensor) -> Tensor:
        gate_adjoint, cell_adjoint = self._adjoints(cache, v)
        return torch.cat((gate_adjoint @ self.weight_hh, cell_adjoint * cache.forget), dim=1)

    def _jacobian_operator(self, cache: LSTMStepCache) -> JacobianOperator:
        # Building the (B, 2H, H) block ∂s'/∂h costs O(B·H²); applying J to e (B, 2H, P) is then
        # one batched GEMM (2·B·H²·P multiply-adds) plus the two diagonal c-paths. Compared with
        # a GEMM over W_hh's 4H gate rows followed by gate scalings, this is half the
        # multiply-adds and needs no (B, 4H, P) scratch.
        return _LSTMJacobianOperator(
            lambda: self._hidden_columns(cache), cache.forget, cache.cell_to_hidden
        )

    def _preactivation_vjp(self, cache: LSTMStepCache, m: Tensor) -> Tensor:
        return self._adjoints(cache, m)[0]

    def _preactivation_jacobian(self, cache: LSTMStepCache) -> Tensor:
        H = self.hidden_size
        batch = cache.gate_slopes.shape[0]
        ds_da = cache.gate_slopes.new_zeros(batch, 2, H, 4, H)
        unit_diagonal = ds_da.diagonal(dim1=2, dim2=4)  # (B, 2 [h, c], 4 gates, H)
        slopes = cache.gate_slopes.view(batch, 4, H)
        unit_diagonal[:, 1, :3] = slopes[:, :3]
        unit_diagonal[:, 0, :3] = slopes[:, :3] * cache.cell_to_hidden[:, None, :]
        unit_diagonal[:, 0, 3] = slopes[:, 3]
        return ds_da.view(batch, 2 * H, 4 * H)


def make_core(
    kind: str, input_size: int, hidden_size: int, activation: str = "tanh"
) -> RecurrentCore:
    """Build a core by name.

    Args:
        kind: "rnn" or "lstm".
        input_size: n_in.
        hidden_size: H.
        activation: "tanh" or "identity" for the RNN; the LSTM accepts only "tanh".
    """
    if kind == "rnn":
        return RNNCore(input_size, hidden_size, activation)
    if kind == "lstm":
        if activation != "tanh":
            raise ValueError(
                f"activation={activation!r} is not available for kind='lstm' (its gates are fixed; "
                f"only 'tanh' is accepted); activations {RNN_ACTIVATIONS} are for kind='rnn'"
            )
        return LSTMCore(input_size, hidden_size)
    raise ValueError(f"kind must be one of {CORE_KINDS}, got {kind!r}")
