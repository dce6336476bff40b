"""Recurrent cores with analytic derivatives: the transition s' = F(x, s; θ) that BP(λ) and its
baselines train.

Symbols: B batch, n_in input size, H hidden units, d state size (d = H for the RNN, d = 2H for the
LSTM, whose state is the joint s = [h, c]), G·H rows of the weight matrices (G = 1 gate for the RNN,
4 for the LSTM).

``forward(x, s)`` is plain differentiable torch (for BPTT and for checking against autograd).
``step(x, s)`` returns ``(s', cache)``; from the cache every core computes, analytically and
without autograd, the derivative products the learners need:

==========================  ================================================  ===================
method                      computes                                          shape
==========================  ================================================  ===================
``jacobian(cache)``         J = ∂s'/∂s                                        (B, d, d)
``vjp(cache, v)``           v J, for row vectors v                            (B, d)
``jvp(cache, e)``           J e, J acting on axis 1 of e (times ``scale``)    (B, d, *rest)
``local_vjp(cache, m)``     Σ_b m_b (∂s'_b/∂θ) with s held fixed              θ.shape, per θ
``local_jacobian(cache)``   ∂s'/∂θ with s held fixed (one step, no history)   (B, d, *θ.shape)
==========================  ================================================  ===================

The derivative methods run under ``torch.no_grad()``: their results carry no autograd graph.
Parameters are ``weight_ih (G·H, n_in)``, ``weight_hh (G·H, H)``, ``bias (G·H,)`` in that order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "CORE_KINDS",
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


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


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


class RecurrentCore(nn.Module, ABC):
    """A batched recurrent transition s' = F(x, s; θ) with analytic one-step derivatives.

    Subclasses set ``num_gates`` and ``cache_type`` and implement the private hooks; the public
    methods here validate their arguments once and dispatch.
    """

    num_gates: int
    cache_type: type

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
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
        _positive_int("batch_size", batch_size)
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
        self._check_cache(cache)
        batch, d = cache.x.shape[0], self.state_size
        _check_tensor("e", e, (batch, d), self.weight_hh.dtype, more_dims=True)
        out3 = None
        if out is not None:
            self._check_out(out, e)
            out3 = out.view(batch, d, -1)
        result = self._jvp(cache, e.reshape(batch, d, -1), scale, out3)
        return out if out is not None else result.view(e.shape)

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
    def _jvp(self, cache: StepCache, e: Tensor, scale: float, out: Tensor | None) -> Tensor:
        """e, out: (B, d, P)."""

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
    ``jvp`` on e (B, H, P) costs B·H²·P multiply-adds (one GEMM with W_hh) plus B·H·P
    multiplications (the row scaling by scale·f'(a)).

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
        self, x: Tensor, s: Tensor, s_next: Tensor, activations: tuple[Tensor, ...]
    ) -> RNNStepCache:
        slope = 1.0 - s_next.square() if self.activation == "tanh" else torch.ones_like(s_next)
        return RNNStepCache(x=x, h_prev=s, slope=slope)

    def _jacobian(self, cache: RNNStepCache) -> Tensor:
        return cache.slope[:, :, None] * self.weight_hh

    def _vjp(self, cache: RNNStepCache, v: Tensor) -> Tensor:
        return (v * cache.slope) @ self.weight_hh

    def _jvp(self, cache: RNNStepCache, e: Tensor, scale: float, out: Tensor | None) -> Tensor:
        # W_hh is shared by the batch: one broadcast GEMM, then scale the rows by f'(a).
        result = torch.matmul(self.weight_hh, e, out=out)
        return result.mul_((cache.slope * scale)[:, :, None])

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
        self, x: Tensor, s: Tensor, s_next: Tensor, activations: tuple[Tensor, ...]
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

    def _hidden_columns(self, cache: LSTMStepCache, scale: float) -> Tensor:
        """scale · ∂s'/∂h, the dense first H columns of J: (B, 2H, H), O(B·H²) work."""
        H = self.hidden_size
        slopes = cache.gate_slopes.view(-1, 4, H, 1)
        weights = self.weight_hh.view(4, H, H)
        dc_dh = (slopes[:, :3] * weights[:3]).sum(dim=1)
        dh_dh = slopes[:, 3] * weights[3] + cache.cell_to_hidden[:, :, None] * dc_dh
        columns = torch.cat((dh_dh, dc_dh), dim=1)
        return columns if scale == 1.0 else columns.mul_(scale)

    def _jacobian(self, cache: LSTMStepCache) -> Tensor:
        H = self.hidden_size
        jacobian = cache.forget.new_zeros(cache.forget.shape[0], 2 * H, 2 * H)
        jacobian[:, :, :H] = self._hidden_columns(cache, 1.0)
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

    def _jvp(self, cache: LSTMStepCache, e: Tensor, scale: float, out: Tensor | None) -> Tensor:
        # One batched GEMM with the (B, 2H, H) block ∂s'/∂h (O(B·H²) to build), then the two
        # diagonal c-paths. Compared with one GEMM over W_hh's 4H gate rows followed by gate
        # scalings, this is half the multiply-adds (2·B·H²·P) and needs no (B, 4H, P) scratch.
        H = self.hidden_size
        e_c = e[:, H:]
        result = torch.bmm(self._hidden_columns(cache, scale), e[:, :H], out=out)
        carry = cache.forget * scale
        result[:, H:].addcmul_(e_c, carry[:, :, None])
        result[:, :H].addcmul_(e_c, (carry * cache.cell_to_hidden)[:, :, None])
        return result

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
