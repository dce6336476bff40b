"""e-prop (Bellec et al., "A solution to the learning dilemma for recurrent networks of spiking
neurons", Nature Communications 2020), with symmetric feedback: eligibility traces that follow
each unit's internal state, times the immediate learning signal
(docs/algorithm.md#online-approximations-of-rtrl).

e-prop splits a unit's state into its internal ("hidden") state and its output z, and drops every
path of credit through the previous outputs z_{t-1}. With learning signal L_t = dL_t/dz_t (the
loss gradient through the readout weights) and ∂L/∂θ ≈ Σ_t L_t · e_t:

- LSTM (internal state c, output h): the eligibility vector ε_t = ∂c_t/∂c_{t-1} ε_{t-1} +
  ∂c_t/∂θ = σ(f_t) ε_{t-1} + ∂c_t/∂θ, and the eligibility trace e_t = ∂h_t/∂c_t ε_t + ∂h_t/∂θ
  (h_{t-1} and c_{t-1} held fixed in every partial derivative).
- RNN (h_t = f(W_ih x_t + W_hh h_{t-1} + b)): the unit has no internal state besides its output,
  so e_t = ∂h_t/∂θ and e-prop learns exactly as :class:`~agents.no_sg.NoSG` (the trace decay is
  zero).

This is :mod:`agents.unit_influence`'s recursion keeping only the Jacobian entries from the unit's
internal state: ∂c_t/∂c_{t-1} and ∂h_t/∂c_{t-1}, whose block of S is ε and whose output block is
e. SnAp-1 (:mod:`agents.snap`) also keeps the unit's paths through h_{t-1}.

Cost per token: O(B·P) numbers and work, against RTRL's B·d·P numbers and O(B·d·H·P) work.
"""

from __future__ import annotations

from agents.unit_influence import UnitInfluenceLearner, UnitLayout

__all__ = ["EProp"]


class EProp(UnitInfluenceLearner):
    """e-prop: eligibility traces of each unit's internal state times the immediate learning
    signal (symmetric feedback through the readout weights).

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        **kwargs: ``core`` (``"rnn"``, where e-prop equals NoSG, or ``"lstm"``), ``hidden_size``,
            ``activation``, ``lr_core``, ``lr_readout``, ``update``, ``n_envs``, ``dtype``,
            ``device``, ``seed``, ``verbose`` as :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def _kept_jacobian(self, layout: UnitLayout) -> list[tuple[int, int]]:
        return [
            (k, j) for k in range(layout.blocks) for j in range(layout.blocks) if layout.internal[j]
        ]
