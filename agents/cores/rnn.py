"""The vanilla RNN core: s' = f(W_ih x + W_hh s + b), f = tanh or identity; state s = h, d = H."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from agents.cores.analytic import AnalyticCore
from agents.cores.base import DenseJacobianOperator, JacobianOperator

__all__ = ["RNN_ACTIVATIONS", "RNNCore", "RNNStepCache"]

RNN_ACTIVATIONS = ("tanh", "identity")


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


class RNNCore(AnalyticCore):
    """Vanilla RNN: s' = f(W_ih x + W_hh s + b), f = tanh or identity; state s = h, d = H.

    Jacobian J = diag(f'(a)) W_hh; local derivatives f'(a)⊗x, f'(a)⊗s, f'(a).
    ``jvp`` on e (B, H, P) costs B·H²·P multiply-adds (one batched GEMM with the B row-scaled
    copies scale·diag(f'(a)) W_hh, which cost B·H² to form, so that no separate row-scaling pass
    over e is needed). Weights copy over from ``torch.nn.RNN`` / ``torch.nn.RNNCell`` with
    b = b_ih + b_hh.

    Args:
        input_size: n_in.
        hidden_size: H.
        activation: "tanh" (as ``torch.nn.RNNCell``) or "identity" (a linear RNN).
        recurrent_init, spectral_radius: as :class:`~agents.cores.analytic.AnalyticCore`.
    """

    kind = "rnn"
    num_gates = 1
    cache_type = RNNStepCache

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        activation: str = "tanh",
        *,
        recurrent_init: str = "uniform",
        spectral_radius: float | None = None,
    ) -> None:
        if activation not in RNN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {RNN_ACTIVATIONS}, got {activation!r}")
        super().__init__(
            input_size, hidden_size, recurrent_init=recurrent_init, spectral_radius=spectral_radius
        )
        self.activation = activation

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"

    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        a = torch.addmm(self.bias, x, self.weight_ih.T).addmm_(s, self.weight_hh.T)
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
        def matrices(scale: float) -> Tensor:  # scale · diag(f'(a)) W_hh: (B, H, H)
            row_scale = cache.slope if scale == 1.0 else cache.slope * scale
            return row_scale[:, :, None] * self.weight_hh

        batch, hidden = cache.slope.shape
        return DenseJacobianOperator(matrices, batch, hidden, self.weight_hh)

    def _gate_adjoints(self, cache: RNNStepCache, v: Tensor) -> tuple[Tensor, Tensor]:
        adjoint = v * cache.slope
        return adjoint, adjoint

    def _gate_jacobians(self, cache: RNNStepCache) -> tuple[Tensor, Tensor]:
        jacobian = torch.diag_embed(cache.slope)
        return jacobian, jacobian
