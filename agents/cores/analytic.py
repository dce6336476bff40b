"""The built-in cores' common base: gates affine in the input and the hidden units, analytic
derivatives.

Every gate pre-activation is a sum of an input part g_x = W_ih x + b_ih and a hidden part
g_h = W_hh h + b_hh (G gates, so both are (B, G·H); the RNN and LSTM fold the two biases into
one ``bias``, the GRU keeps ``bias_ih`` and ``bias_hh`` because it multiplies one hidden part by
its reset gate). A subclass gives, from its step cache, the adjoints of the two parts for a row
vector v, a_x = v · ∂s'/∂g_x and a_h = v · ∂s'/∂g_h (B, G·H), and their dense Jacobians; the
parameters' local derivatives follow for all subclasses alike:

    ∂/∂W_ih = a_xᵀ x,   ∂/∂W_hh = a_hᵀ h,   ∂/∂b_ih = Σ_b a_x,   ∂/∂b_hh = Σ_b a_h,

and so does the input Jacobian ∂s'/∂x that a stack of layers chains (:mod:`.stacked`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from agents.cores.base import RecurrentCore
from agents.cores.initialisation import check_recurrent_init, init_recurrent_

__all__ = ["AnalyticCore"]


class AnalyticCore(RecurrentCore):
    """A built-in core: parameters ``weight_ih (G·H, n_in)``, ``weight_hh (G·H, H)`` and
    ``bias (G·H,)`` (or ``bias_ih``, ``bias_hh`` when ``separate_biases``), in that order.

    Subclasses set ``kind``, ``num_gates``, ``separate_biases`` and implement the transition, the
    cache and the hooks below.

    Args:
        input_size: n_in.
        hidden_size: H.
        recurrent_init: ``"uniform"`` (every parameter U(−1/√H, 1/√H), as torch) or
            ``"orthogonal"`` (each gate's block of W_hh a random orthogonal matrix).
        spectral_radius: None, or r > 0: each gate's block of W_hh rescaled to spectral radius r.
    """

    kind: str
    num_gates: int
    separate_biases: bool = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        recurrent_init: str = "uniform",
        spectral_radius: float | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.recurrent_init, self.spectral_radius = check_recurrent_init(
            recurrent_init, spectral_radius
        )
        rows = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        if self.separate_biases:
            self.bias_ih = nn.Parameter(torch.empty(rows))
            self.bias_hh = nn.Parameter(torch.empty(rows))
        else:
            self.bias = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter from U(−1/√H, 1/√H), as torch's recurrent layers do, then apply
        ``recurrent_init`` and ``spectral_radius`` to W_hh (:mod:`.initialisation`)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)
        init_recurrent_(self.weight_hh, self.num_gates, self.recurrent_init, self.spectral_radius)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, recurrent_init={self.recurrent_init!r}"
        return text + (
            "" if self.spectral_radius is None else f", spectral_radius={self.spectral_radius}"
        )

    def _like(self) -> Tensor:
        return self.weight_hh

    # ----------------------------------------------------------------- transition
    def _forward(self, x: Tensor, s: Tensor) -> Tensor:
        return self._transition(x, s)[0]

    def _step(self, x: Tensor, s: Tensor) -> tuple[Tensor, Any]:
        s_next, activations = self._transition(x, s)
        return s_next, self._make_cache(x, s, s_next, activations)

    @abstractmethod
    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(s', the activations ``_make_cache`` needs)."""

    @abstractmethod
    def _make_cache(
        self, x: Tensor, s: Tensor, s_next: Tensor, activations: tuple[Tensor, ...]
    ) -> Any: ...

    @abstractmethod
    def _gate_adjoints(self, cache: Any, v: Tensor) -> tuple[Tensor, Tensor]:
        """(v · ∂s'/∂g_x, v · ∂s'/∂g_h) for row vectors v (B, d): two (B, G·H)."""

    @abstractmethod
    def _gate_jacobians(self, cache: Any) -> tuple[Tensor, Tensor]:
        """(∂s'/∂g_x, ∂s'/∂g_h), dense: two (B, d, G·H)."""

    # ----------------------------------------------------------------- parameters
    def _local_vjp(self, cache: Any, m: Tensor) -> tuple[Tensor, ...]:
        a_x, a_h = self._gate_adjoints(cache, m)
        grads = (a_x.T @ cache.x, a_h.T @ cache.h_prev)
        return grads + ((a_x.sum(0), a_h.sum(0)) if self.separate_biases else (a_x.sum(0),))

    def _local_jacobian(self, cache: Any) -> tuple[Tensor, ...]:
        d_x, d_h = self._gate_jacobians(cache)  # (B, d, G·H)
        weights = (
            d_x[..., None] * cache.x[:, None, None, :],
            d_h[..., None] * cache.h_prev[:, None, None, :],
        )
        return weights + ((d_x, d_h) if self.separate_biases else (d_x,))

    # ----------------------------------------------------------------- the input, for stacking
    def _input_vjp(self, cache: Any, v: Tensor) -> Tensor:
        """v · ∂s'/∂x for row vectors v (B, d): (B, n_in)."""
        return self._gate_adjoints(cache, v)[0] @ self.weight_ih

    def _input_jacobian(self, cache: Any) -> Tensor:
        """∂s'/∂x, dense: (B, d, n_in)."""
        return self._gate_jacobians(cache)[0] @ self.weight_ih
