"""The LSTM core on the joint state s = [h, c] (d = 2H), gates in torch's order i, f, g, o."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from agents.cores.analytic import AnalyticCore
from agents.cores.base import JacobianOperator

__all__ = ["LSTMCore", "LSTMStepCache"]


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


class LSTMCore(AnalyticCore):
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
        recurrent_init, spectral_radius: as :class:`~agents.cores.analytic.AnalyticCore` (per
            gate block of W_hh).
    """

    kind = "lstm"
    num_gates = 4
    cache_type = LSTMStepCache

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def _transition(self, x: Tensor, s: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        H = self.hidden_size
        h, c = s[:, :H], s[:, H:]
        a = torch.addmm(self.bias, x, self.weight_ih.T).addmm_(h, self.weight_hh.T)
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

    def _gate_adjoints(self, cache: LSTMStepCache, v: Tensor) -> tuple[Tensor, Tensor]:
        adjoint = self._adjoints(cache, v)[0]
        return adjoint, adjoint

    def _gate_jacobians(self, cache: LSTMStepCache) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        batch = cache.gate_slopes.shape[0]
        ds_da = cache.gate_slopes.new_zeros(batch, 2, H, 4, H)
        unit_diagonal = ds_da.diagonal(dim1=2, dim2=4)  # (B, 2 [h, c], 4 gates, H)
        slopes = cache.gate_slopes.view(batch, 4, H)
        unit_diagonal[:, 1, :3] = slopes[:, :3]
        unit_diagonal[:, 0, :3] = slopes[:, :3] * cache.cell_to_hidden[:, None, :]
        unit_diagonal[:, 0, 3] = slopes[:, 3]
        ds_da = ds_da.view(batch, 2 * H, 4 * H)
        return ds_da, ds_da
