"""Synthesisers: small networks g(s; θ) that predict the future gradient G_t from the state s_t.

Symbols: B batch, d_in state size, d_out output size (the state size by default), n hidden units
of the MLP.

Besides ``forward``, every synthesiser provides the derivative ∂g/∂θ that BP(λ)'s eligibility
traces accumulate (e ← γλ J e + ∂g/∂θ), one trace of shape (B, d_out, *θ.shape) per trace
parameter θ:

- ``parameter_jacobians(s)``: dense ∂g/∂θ, the reference path.
- ``add_parameter_jacobians_(traces, s, scale)``: traces += scale · ∂g/∂θ in place (the traces
  may be strided views, e.g. column blocks of one shared buffer). For a linear layer
  y = W x + b, ∂y_k/∂W_ij = δ_ki x_j and ∂y_k/∂b_i = δ_ki, so only the diagonal over
  (d_out, d_out) is touched: O(B·d_out·d_in) work and no (B, d_out, d_out, d_in) temporary.
- ``parameter_vjp(s, c)``: Σ_b c_b · ∂g(s_b)/∂θ without any trace (one backward pass by hand):
  the TD error's contraction with the new ∂g/∂θ, and BP(λ)'s forward-view update.

Output layers start at zero, so g ≡ 0 until the synthesiser learns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from agents.grad_mode import no_grad
from bpl_envs.checks import check_int

__all__ = [
    "TRACE_PARAMETER_MODES",
    "LinearSynthesiser",
    "MLPSynthesiser",
    "Synthesiser",
    "make_synthesiser",
]

TRACE_PARAMETER_MODES = ("all", "output")


def _zero_initialised_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _add_linear_layer_jacobians_(
    weight_trace: Tensor, bias_trace: Tensor, layer_input: Tensor, scale: float
) -> None:
    """Add scale · ∂y/∂(W, b) of y = W x + b into its traces, touching only their diagonals.

    Args:
        weight_trace: (B, d_out, d_out, d_in), modified in place.
        bias_trace: (B, d_out, d_out), modified in place.
        layer_input: x, (B, d_in).
        scale: the factor.
    """
    # weight_trace[b, k, k, j] += scale · x[b, j]; the diagonal view is (B, d_in, d_out).
    weight_trace.diagonal(dim1=1, dim2=2).add_(layer_input[:, :, None], alpha=scale)
    bias_trace.diagonal(dim1=1, dim2=2).add_(scale)


class Synthesiser(nn.Module, ABC):
    """Base of the synthesisers: g(s) (B, d_in) → (B, d_out) with eligibility-trace support.

    Subclasses own an ``output`` layer (``nn.Linear``, zero-initialised) and implement
    ``trace_parameters``, ``_predict`` and ``_add_parameter_jacobians_``.
    """

    output: nn.Linear

    def __init__(self, state_size: int, output_size: int | None) -> None:
        super().__init__()
        self.state_size = check_int("state_size", state_size, minimum=1)
        self.output_size = (
            state_size if output_size is None else check_int("output_size", output_size, minimum=1)
        )

    def forward(self, s: Tensor) -> Tensor:
        """g(s): s (B, d_in) → (B, d_out)."""
        self._check_state(s)
        return self._predict(s)

    @abstractmethod
    def trace_parameters(self) -> list[Tensor]:
        """The parameters that carry eligibility traces and learn, in trace order."""

    @property
    def linear_in_trace_parameters(self) -> bool:
        """Whether g is linear in its trace parameters θ, so that ∂g(s)/∂θ does not depend on θ
        (BP(λ)'s replay then needs no copy of θ per stored state when θ moves every token).
        False unless a subclass knows better."""
        return False

    def trace_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        """The trace shapes (batch_size, d_out, *θ.shape), in ``trace_parameters()`` order."""
        check_int("batch_size", batch_size, minimum=1)
        return [(batch_size, self.output_size, *p.shape) for p in self.trace_parameters()]

    @no_grad
    def parameter_jacobians(self, s: Tensor) -> tuple[Tensor, ...]:
        """Dense ∂g(s)/∂θ per trace parameter: each (B, d_out, *θ.shape)."""
        self._check_state(s)
        jacobians = tuple(s.new_zeros(shape) for shape in self.trace_shapes(s.shape[0]))
        self._add_parameter_jacobians_(jacobians, s, 1.0)
        return jacobians

    @no_grad
    def add_parameter_jacobians_(
        self, traces: Sequence[Tensor], s: Tensor, scale: float = 1.0
    ) -> None:
        """traces[i] += scale · ∂g(s)/∂θ_i, in place, without dense Kronecker temporaries.

        Args:
            traces: one tensor per trace parameter, shapes ``trace_shapes(B)``, the parameters'
                dtype.
            s: (B, d_in) the states the Jacobians are taken at.
            scale: the factor.
        """
        self._check_state(s)
        shapes = self.trace_shapes(s.shape[0])
        if not isinstance(traces, list | tuple) or len(traces) != len(shapes):
            raise ValueError(
                f"traces must be a list or tuple of {len(shapes)} tensors with shapes {shapes}, "
                f"got {type(traces).__name__}"
                + (f" of length {len(traces)}" if isinstance(traces, list | tuple) else "")
            )
        for index, (trace, shape) in enumerate(zip(traces, shapes, strict=True)):
            if not isinstance(trace, Tensor):
                raise TypeError(
                    f"traces[{index}] must be a torch.Tensor, got {type(trace).__name__}"
                )
            if tuple(trace.shape) != shape or trace.dtype != s.dtype:
                raise ValueError(
                    f"traces[{index}] must have shape {shape} and dtype {s.dtype}, got shape "
                    f"{tuple(trace.shape)} and dtype {trace.dtype}"
                )
        self._add_parameter_jacobians_(traces, s, scale)

    @no_grad
    def parameter_vjp(
        self, s: Tensor, cotangent: Tensor, out: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, ...]:
        """Σ_b cotangent_b · ∂g(s_b)/∂θ per trace parameter, shaped like θ, without traces.

        The contraction of a trace increment δ · ∂g/∂θ, and the forward-view update
        Σ_t (G^λ_t − g(s_t)) · ∂g(s_t)/∂θ when states and cotangents of many steps are stacked
        along the batch axis. O(N·d_out·d_in) for N rows (one backward pass by hand). With a
        leading group axis, one such sum per group in one call (BP(λ)'s replay: the increments
        of several tokens).

        Args:
            s: (N, d_in) states, or (G, N, d_in) for G groups of N.
            cotangent: (N, d_out) row vectors (or (G, N, d_out)), the states' dtype.
            out: optional tensors shaped like the trace parameters (e.g. views of one buffer)
                to write the results into (without a group axis only).

        Returns:
            one tensor per ``trace_parameters()`` entry, in that order (``out``'s when given):
            shaped like it, or (G, *θ.shape) with a group axis.
        """
        grouped = isinstance(s, Tensor) and s.dim() == 3
        self._check_state(s[0] if grouped else s)
        rows = tuple(s.shape[:-1])
        if (
            not isinstance(cotangent, Tensor)
            or cotangent.shape != (*rows, self.output_size)
            or cotangent.dtype != s.dtype
        ):
            got = (
                f"{tuple(cotangent.shape)}, {cotangent.dtype}"
                if isinstance(cotangent, Tensor)
                else type(cotangent).__name__
            )
            raise ValueError(
                f"cotangent must be a tensor of shape {(*rows, self.output_size)} and "
                f"dtype {s.dtype} (one row per state), got {got}"
            )
        if out is not None and grouped:
            raise ValueError("out is for states without a group axis: (N, d_in), not (G, N, d_in)")
        if out is not None:
            shapes = [tuple(p.shape) for p in self.trace_parameters()]
            if not isinstance(out, list | tuple) or [
                (tuple(o.shape), o.dtype) if isinstance(o, Tensor) else None for o in out
            ] != [(shape, s.dtype) for shape in shapes]:
                raise ValueError(
                    f"out must be {len(shapes)} tensors of shapes {shapes} and dtype {s.dtype}, "
                    f"got {out!r:.120}"
                )
        return self._parameter_vjp(s, cotangent, [None] * 4 if out is None else list(out))

    def _check_state(self, s: object) -> None:
        if not isinstance(s, Tensor):
            raise TypeError(f"s must be a torch.Tensor, got {type(s).__name__}")
        if s.dim() != 2 or s.shape[1] != self.state_size:
            raise ValueError(
                f"s must have shape (B, state_size) = (any, {self.state_size}), "
                f"got {tuple(s.shape)}"
            )
        dtype = self.output.weight.dtype
        if s.dtype != dtype:
            raise TypeError(f"s must have the parameters' dtype {dtype}, got {s.dtype}")

    @abstractmethod
    def _predict(self, s: Tensor) -> Tensor: ...

    @abstractmethod
    def _add_parameter_jacobians_(
        self, traces: Sequence[Tensor], s: Tensor, scale: float
    ) -> None: ...

    @abstractmethod
    def _parameter_vjp(
        self, s: Tensor, cotangent: Tensor, out: list[Tensor | None]
    ) -> tuple[Tensor, ...]:
        """s (N, d_in) or (G, N, d_in); ``out``: a target or None per trace parameter (at least
        as many entries)."""


def _summed_outer(cotangent: Tensor, x: Tensor, out: Tensor | None) -> Tensor:
    """Σ_rows cotangentᵀ x: (N, k), (N, m) → (k, m), or per group (G, N, ·) → (G, k, m)."""
    if cotangent.dim() == 3:
        return torch.bmm(cotangent.transpose(1, 2), x)
    return torch.mm(cotangent.T, x, out=out)


def _summed_rows(cotangent: Tensor, out: Tensor | None) -> Tensor:
    """Σ_rows cotangent: (N, k) → (k,), or per group (G, N, k) → (G, k)."""
    if cotangent.dim() == 3:
        return cotangent.sum(1)
    return torch.sum(cotangent, 0, out=out)


class LinearSynthesiser(Synthesiser):
    """g(s) = W s + b with W (d_out, d_in) and b (d_out,) initialised to zero.

    Trace parameters: [W, b], traces (B, d_out, d_out, d_in) and (B, d_out, d_out):
    B·d_out²·(d_in + 1) numbers.

    Args:
        state_size: d_in.
        output_size: d_out; None means d_in (the synthetic gradient of the state itself).
    """

    def __init__(self, state_size: int, output_size: int | None = None) -> None:
        super().__init__(state_size, output_size)
        self.output = _zero_initialised_linear(self.state_size, self.output_size)

    def trace_parameters(self) -> list[Tensor]:
        return [self.output.weight, self.output.bias]

    @property
    def linear_in_trace_parameters(self) -> bool:
        return True

    def _predict(self, s: Tensor) -> Tensor:
        return self.output(s)

    def _add_parameter_jacobians_(self, traces: Sequence[Tensor], s: Tensor, scale: float) -> None:
        _add_linear_layer_jacobians_(traces[0], traces[1], s, scale)

    def _parameter_vjp(
        self, s: Tensor, cotangent: Tensor, out: list[Tensor | None]
    ) -> tuple[Tensor, ...]:
        return _summed_outer(cotangent, s, out[0]), _summed_rows(cotangent, out[1])


class MLPSynthesiser(Synthesiser):
    """g(s) = W2 relu(W1 s + b1) + b2, one hidden layer of n units.

    The hidden layer (W1 (n, d_in), b1 (n,)) is initialised like ``torch.nn.Linear``; the output
    layer (W2 (d_out, n), b2 (d_out,)) starts at zero.

    Args:
        state_size: d_in.
        hidden_size: n.
        output_size: d_out; None means d_in.
        trace_parameters: "all" (traces over W1, b1, W2, b2; all learn) or "output" (only W2, b2
            carry traces and learn; the hidden layer is a fixed random feature map, frozen with
            ``requires_grad=False``).
    """

    def __init__(
        self,
        state_size: int,
        hidden_size: int,
        output_size: int | None = None,
        trace_parameters: str = "all",
    ) -> None:
        if trace_parameters not in TRACE_PARAMETER_MODES:
            raise ValueError(
                f"trace_parameters must be one of {TRACE_PARAMETER_MODES}, got {trace_parameters!r}"
            )
        super().__init__(state_size, output_size)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.trace_mode = trace_parameters
        self.hidden = nn.Linear(self.state_size, self.hidden_size)
        self.output = _zero_initialised_linear(self.hidden_size, self.output_size)
        if trace_parameters == "output":
            self.hidden.requires_grad_(False)

    def trace_parameters(self) -> list[Tensor]:
        output = [self.output.weight, self.output.bias]
        if self.trace_mode == "output":
            return output
        return [self.hidden.weight, self.hidden.bias, *output]

    @property
    def linear_in_trace_parameters(self) -> bool:
        return self.trace_mode == "output"  # W2 relu(W1 s + b1) + b2 with W1, b1 fixed

    def extra_repr(self) -> str:
        return f"trace_parameters={self.trace_mode!r}"

    def _predict(self, s: Tensor) -> Tensor:
        return self.output(torch.relu(self.hidden(s)))

    def _add_parameter_jacobians_(self, traces: Sequence[Tensor], s: Tensor, scale: float) -> None:
        preactivation = self.hidden(s)  # (B, n)
        features = torch.relu(preactivation)
        if self.trace_mode == "all":
            hidden_weight_trace, hidden_bias_trace = traces[0], traces[1]
            # ∂g_k/∂z_i = W2[k, i] relu'(z_i): (B, d_out, n); then ∂g_k/∂W1[i, j] = that · s_j,
            # added as a broadcast outer product (any trace strides, nothing trace-sized made).
            dg_dz = self.output.weight * (preactivation > 0).to(s.dtype)[:, None, :]
            hidden_weight_trace.addcmul_(dg_dz[..., None], s[:, None, None, :], value=scale)
            hidden_bias_trace.add_(dg_dz, alpha=scale)
        _add_linear_layer_jacobians_(traces[-2], traces[-1], features, scale)

    def _parameter_vjp(
        self, s: Tensor, cotangent: Tensor, out: list[Tensor | None]
    ) -> tuple[Tensor, ...]:
        preactivation = self.hidden(s)  # (N, n)
        first = 0 if self.trace_mode == "output" else 2  # where the output layer's entries are
        output = (
            _summed_outer(cotangent, torch.relu(preactivation), out[first]),
            _summed_rows(cotangent, out[first + 1]),
        )
        if self.trace_mode == "output":
            return output
        # back through the output layer and the relu: dL/dz = (c W2) ⊙ relu'(z), (N, n)
        hidden_cotangent = (cotangent @ self.output.weight).mul_(preactivation > 0)
        hidden = (
            _summed_outer(hidden_cotangent, s, out[0]),
            _summed_rows(hidden_cotangent, out[1]),
        )
        return (*hidden, *output)


def make_synthesiser(
    state_size: int,
    hidden_size: int | None = None,
    output_size: int | None = None,
    trace_parameters: str = "all",
) -> Synthesiser:
    """Build a synthesiser: linear when ``hidden_size`` is None, else a one-hidden-layer MLP.

    Args:
        state_size: d_in.
        hidden_size: None for :class:`LinearSynthesiser`, a positive int n for
            :class:`MLPSynthesiser`.
        output_size: d_out; None means d_in.
        trace_parameters: "all" or "output" (see :class:`MLPSynthesiser`). A linear synthesiser
            has only an output layer, so both values mean the same for it.
    """
    if trace_parameters not in TRACE_PARAMETER_MODES:
        raise ValueError(
            f"trace_parameters must be one of {TRACE_PARAMETER_MODES}, got {trace_parameters!r}"
        )
    if hidden_size is None:
        return LinearSynthesiser(state_size, output_size)
    return MLPSynthesiser(state_size, hidden_size, output_size, trace_parameters)
