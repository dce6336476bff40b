"""SnAp-1 (Menick et al., "Practical real time recurrent learning with a sparse approximation",
ICLR 2021): RTRL keeping, for every parameter, only the influence entries that the parameter
reaches in one step (docs/algorithm.md#online-approximations-of-rtrl).

    S_t = M ⊙ (J_t S_{t-1} + I_t)      M: the sparsity pattern of I_t = (∂s_t/∂θ)_local

For the RNN a parameter of unit u reaches only h_u, so S keeps one number per parameter and J_t
enters through its diagonal: S_t[u, θ] = J_t[u, u] S_{t-1}[u, θ] + I_t[u, θ]. For the LSTM a gate
parameter of unit u reaches h_u and c_u (the output gate only h_u), and J_t enters through the
2 × 2 block of unit u. Where J_t has no entries between different units (an RNN with a diagonal
W_hh) nothing is dropped and SnAp-1 is RTRL. The recursion is
:mod:`agents.unit_influence`'s with the whole unit block of J kept.

Cost per token: O(B·P) numbers and work (plus the dense Jacobian's O(B·d²) and its unit blocks),
against RTRL's B·d·P numbers and O(B·d·H·P) work.
"""

from __future__ import annotations

from agents.unit_influence import UnitInfluenceLearner, UnitLayout

__all__ = ["SnAp1"]


class SnAp1(UnitInfluenceLearner):
    """SnAp-1: RTRL restricted to the influence entries each parameter reaches in one step.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        **kwargs: ``core`` (``"rnn"`` or ``"lstm"``), ``hidden_size``, ``activation``,
            ``lr_core``, ``lr_readout``, ``update``, ``n_envs``, ``dtype``, ``device``, ``seed``,
            ``verbose`` as :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def _kept_jacobian(self, layout: UnitLayout) -> list[tuple[int, int]]:
        return [(k, j) for k in range(layout.blocks) for j in range(layout.blocks)]
