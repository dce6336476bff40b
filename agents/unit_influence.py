"""RTRL restricted to each unit's own state: what SnAp-1 and e-prop share.

RTRL carries the influence matrix S_t = ∂s_t/∂θ, d numbers per parameter and sequence, through
S_t = J_t S_{t-1} + I_t (J_t = ∂s_t/∂s_{t-1}, I_t = (∂s_t/∂θ)_local). In the RNN and the LSTM
every parameter belongs to one unit u (the rows of W_ih, W_hh and b are the units' gate rows, row
r belongs to unit r mod H) and, in one step, moves only that unit's entries of the state: h_u for
the RNN, h_u and c_u for the LSTM. Keeping only those entries of S (``blocks`` numbers per
parameter: 1 for the RNN, 2 for the LSTM) and only the entries of J between them,

    S_t[k, θ] = M[k, θ] · (Σ_j K[k, j] · J_t[k_u, j_u] S_{t-1}[j, θ] + I_t[k_u, θ])

(k, j range over the state blocks, k_u is block k's entry of θ's unit u, M[k, θ] = 1 where θ
reaches block k in one step, K the kept Jacobian entries) gives an O(B·P) approximation of RTRL's
gradient Σ_t l_t · S_t, against RTRL's B·d·P numbers and O(B·d·H·P) work per token:

- SnAp-1 (Menick et al. 2021) keeps every entry of the unit's block of J (K = 1);
- e-prop (Bellec et al. 2020) keeps only the paths through the unit's internal state (the LSTM's
  cell c: K[k, j] = 1 for j = c), dropping every path through the previous output h.

The one-step influences I_t come from the core's own ``local_vjp`` (one call per state block, per
sequence) and the Jacobian blocks from its ``jacobian``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from agents.cores import LSTMCore, RecurrentCore, RNNCore
from agents.local_derivatives import per_sequence_local_vjp
from agents.sequence_learner import SequenceLearner, grad_of

__all__ = ["UnitInfluenceLearner", "UnitLayout", "unit_layout"]

SUPPORTED_CORES = ("rnn", "lstm")


@dataclass(frozen=True)
class UnitLayout:
    """How a core's state and parameters split into its H units.

    Attributes:
        blocks: the state is ``blocks`` stacked vectors of H entries (RNN: [h]; LSTM: [h, c]).
        internal: per block, whether it is internal state rather than the unit's output (the
            LSTM's c) — what e-prop's eligibility traces follow.
        reached: (blocks, G) bools: whether the parameters of gate g reach block k in one step
            (the LSTM's output gate does not reach c).
    """

    blocks: int
    internal: tuple[bool, ...]
    reached: tuple[tuple[bool, ...], ...]


def unit_layout(core: RecurrentCore, learner: str) -> UnitLayout:
    """The :class:`UnitLayout` of an RNN or LSTM core; a ValueError names ``learner`` for others."""
    if isinstance(core, LSTMCore):  # gates i, f, g, o; state [h, c]
        return UnitLayout(2, (False, True), ((True,) * 4, (True, True, True, False)))
    if isinstance(core, RNNCore):
        return UnitLayout(1, (False,), ((True,),))
    raise ValueError(
        f"{learner} needs a core whose parameters are per-unit gate rows: core must be one of "
        f"{SUPPORTED_CORES}, got a {type(core).__name__}"
    )


class UnitInfluenceLearner(SequenceLearner):
    """RTRL keeping each parameter's influence on its own unit only (module docstring).

    Subclasses say which Jacobian entries between a unit's state blocks they keep
    (:meth:`_kept_jacobian`). Same arguments as
    :class:`~agents.sequence_learner.SequenceLearner`; ``core`` must be ``"rnn"`` or ``"lstm"``.
    """

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._layout = unit_layout(self.core, type(self).__name__)
        self._kept = self._kept_jacobian(self._layout)
        H, blocks = self.hidden_size, self._layout.blocks
        dtype, device = self.dtype, self.device
        gates = len(self._layout.reached[0])  # G, from the (blocks, G) layout
        rows = torch.arange(gates * H, device=device)
        self._row_units = rows % H  # (G·H,) the unit of each parameter row
        reached = torch.tensor(self._layout.reached, dtype=dtype, device=device)  # (blocks, G)
        self._reached_rows = reached.repeat_interleave(H, dim=1)  # (blocks, G·H)
        identity = torch.eye(blocks, dtype=dtype, device=device)
        self._block_signals = identity.repeat_interleave(H, dim=1)  # (blocks, d)

    @abstractmethod
    def _kept_jacobian(self, layout: UnitLayout) -> list[tuple[int, int]]:
        """(k, j) pairs of state blocks whose Jacobian entries J[k_u, j_u] the recursion keeps."""

    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)
        blocks = self._layout.blocks
        parameters = self.core.parameters() if self.lr_core > 0 else []
        self._influence = [
            torch.zeros(batch_size, blocks, *p.shape, dtype=self.dtype, device=self.device)
            for p in parameters
        ]

    @torch.no_grad()
    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:  # noqa: ARG002 (hook)
        if self.update == "step":
            self._zero_grads()
        l_t = self._immediate_gradient(loss_grad)
        self._watch(loss_grad)
        if self.lr_core > 0:
            self._advance_influence()
            batch, blocks = l_t.shape[0], self._layout.blocks
            signal = l_t.view(batch, blocks, self.hidden_size)[..., self._row_units]
            for parameter, influence in zip(self.core.parameters(), self._influence, strict=True):
                weights = signal.view(*signal.shape, *[1] * (influence.dim() - 3))
                grad_of(parameter).add_((weights * influence).sum((0, 1)))
            self._watch(*(grad_of(p) for p in self.core.parameters()))
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()

    def _advance_influence(self) -> None:
        """S_t from S_{t-1} for every core parameter (the module docstring's recursion)."""
        cache, blocks = self._cache, self._layout.blocks
        batch = self._state.shape[0]
        signals = self._block_signals.expand(batch, -1, -1)
        local = per_sequence_local_vjp(self.core, cache, signals)  # I_t: (B, blocks, *θ.shape)
        if self._kept:
            H = self.hidden_size
            jacobian = self.core.jacobian(cache).view(batch, blocks, H, blocks, H)
            unit_blocks = jacobian.diagonal(dim1=2, dim2=4)  # (B, k, j, H): J[k_u, j_u]
            row_blocks = unit_blocks[..., self._row_units]  # (B, k, j, G·H)
        for index, (new, old) in enumerate(zip(local, self._influence, strict=True)):
            trailing = [1] * (new.dim() - 3)
            for k, j in self._kept:
                new[:, k].addcmul_(row_blocks[:, k, j].view(batch, -1, *trailing), old[:, j])
            new.mul_(self._reached_rows.view(blocks, -1, *trailing))
            self._influence[index] = new
