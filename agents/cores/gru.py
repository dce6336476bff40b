"""The GRU core, in ``torch.nn.GRUCell``'s conventions (gates r, z, n; state s = h, d = H).

With g_x = W_ih x + b_ih and g_h = W_hh h + b_hh, each (B, 3H) in the gate order r, z, n:

    r = σ(g_x,r + g_h,r)      z = σ(g_x,z + g_h,z)      n = tanh(g_x,n + r ⊙ g_h,n)
    h' = (1 − z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from agents.cores.analytic import AnalyticCore
from agents.cores.base import DenseJacobianOperator, JacobianOperator

__all__ = ["GRUCore", "GRUStepCache"]


class GRUStepCache(NamedTuple):
    """What :class:`GRUCore`'s analytic derivatives need from one step.

    With a_n = g_x,n + r ⊙ g_h,n the candidate's pre-activation:

    Attributes:
        x: (B, n_in) the input of the step.
        h_prev: (B, H) the previous state h (the input of W_hh).
        input_slopes: (B, 3H) ∂h'/∂g_x elementwise, [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂a_n]
            = [(1 − z)·tanh'(a_n)·g_h,n·σ'(a_r), (h − n)·σ'(a_z), (1 − z)·tanh'(a_n)].
        hidden_slopes: (B, 3H) ∂h'/∂g_h elementwise: as ``input_slopes`` with the last block
            times r (the reset gate scales g_h,n).
        update: (B, H) z, the direct path ∂h'/∂h = diag(z) besides the gates.
    """

    x: Tensor
    h_prev: Tensor
    input_slopes: Tensor
    hidden_slopes: Tensor
    update: Tensor


class GRUCore(AnalyticCore):
    """GRU with torch's gate order r, z, n and separate biases ``bias_ih``, ``bias_hh`` (the reset
    gate multiplies W_hn h + b_hn, so the two biases of n cannot be folded into one). Parameters
    copy over one to one from ``torch.nn.GRU`` / ``torch.nn.GRUCell``.

    Jacobian J = diag(z) + Σ_gates diag(∂h'/∂g_h,gate) W_h,gate (dense (B, H, H), built in
    O(B·H²) per step); ``jvp`` on e (B, H, P) is then one batched GEMM, B·H²·P multiply-adds.

    Args:
        input_size: n_in.
        hidden_size: H.
        recurrent_init, spectral_radius: as :class:`~agents.cores.analytic.AnalyticCore` (per
            gate block of W_hh).
    """

    kind = "gru"
    num_gates = 3
    separate_biases = True
    cache_type = GRUStepCache

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        H = self.hidden_size
        g_x = torch.addmm(self.bias_ih, x, self.weight_ih.T)
        g_h = torch.addmm(self.bias_hh, s, self.weight_hh.T)
        reset = torch.sigmoid(g_x[:, :H] + g_h[:, :H])
        update = torch.sigmoid(g_x[:, H : 2 * H] + g_h[:, H : 2 * H])
        hidden_candidate = g_h[:, 2 * H :]
        candidate = torch.tanh(g_x[:, 2 * H :] + reset * hidden_candidate)
        h_next = (s - candidate) * update + candidate
        return h_next, (reset, update, candidate, hidden_candidate)

    def _make_cache(
        self,
        x: Tensor,
        s: Tensor,
        s_next: Tensor,  # noqa: ARG002 (the GRU's cache is built from the activations)
        activations: tuple[Tensor, ...],
    ) -> GRUStepCache:
        reset, update, candidate, hidden_candidate = activations
        d_candidate = (1.0 - update) * (1.0 - candidate.square())
        d_update = (s - candidate) * update * (1.0 - update)
        d_reset = d_candidate * hidden_candidate * reset * (1.0 - reset)
        return GRUStepCache(
            x=x,
            h_prev=s,
            input_slopes=torch.cat((d_reset, d_update, d_candidate), dim=1),
            hidden_slopes=torch.cat((d_reset, d_update, d_candidate * reset), dim=1),
            update=update,
        )

    def _jacobian(self, cache: GRUStepCache) -> Tensor:
        H = self.hidden_size
        slopes = cache.hidden_slopes.view(-1, 3, H, 1)
        jacobian = (slopes * self.weight_hh.view(3, H, H)).sum(dim=1)
        jacobian.diagonal(dim1=1, dim2=2).add_(cache.update)
        return jacobian

    def _vjp(self, cache: GRUStepCache, v: Tensor) -> Tensor:
        hidden_adjoint = self._gate_adjoints(cache, v)[1]
        return torch.addcmul(hidden_adjoint @ self.weight_hh, v, cache.update)

    def _jacobian_operator(self, cache: GRUStepCache) -> JacobianOperator:
        def matrices(scale: float) -> Tensor:  # scale · J: (B, H, H), fresh, scaled in place
            jacobian = self._jacobian(cache)
            return jacobian if scale == 1.0 else jacobian.mul_(scale)

        batch, hidden = cache.update.shape
        return DenseJacobianOperator(matrices, batch, hidden, self.weight_hh)

    def _gate_adjoints(self, cache: GRUStepCache, v: Tensor) -> tuple[Tensor, Tensor]:
        tiled = torch.cat((v, v, v), dim=1)
        return tiled * cache.input_slopes, tiled * cache.hidden_slopes

    def _gate_jacobians(self, cache: GRUStepCache) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        batch = cache.update.shape[0]
        jacobians = []
        for slopes in (cache.input_slopes, cache.hidden_slopes):
            dense = slopes.new_zeros(batch, H, 3, H)
            dense.diagonal(dim1=1, dim2=3).copy_(slopes.view(batch, 3, H))  # (B, 3, H) view
            jacobians.append(dense.view(batch, H, 3 * H))
        return jacobians[0], jacobians[1]
