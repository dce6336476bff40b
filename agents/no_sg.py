"""No synthetic gradient: the core learns from each token's immediate loss alone.

Per token t, with l_t = dL_t/ds_t of the batch-mean loss (docs/algorithm.md#how-the-core-learns
with beta = 0):

    grad W += l_t . (ds_t/dW)_local                (one-step derivatives, no propagation in time)

This is BP(lambda) with ``sg_weight = 0`` and truncated BPTT with ``n = 1``: the floor that any
credit assignment through time has to beat. On tasks scored only at the last token the core
still learns, but only from the last step's local derivatives.
"""

from __future__ import annotations

import torch

from agents.sequence_learner import SequenceLearner

__all__ = ["NoSG"]


class NoSG(SequenceLearner):
    """Learner with the immediate loss gradient and one-step (local) derivatives only.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        update: ``"sequence"`` (accumulate over the batch of sequences, apply after its last
            token) or ``"step"`` (apply after every token: fully online).
        core, hidden_size, activation, num_layers, recurrent_init, spectral_radius, lr_core,
        lr_readout, n_envs, dtype, device, seed, verbose: as
            :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:  # noqa: ARG002 (hook)
        if self.update == "step":
            self._zero_grads()
        self._watch(loss_grad)
        self._local_core_update(self._cache, self._immediate_gradient(loss_grad))
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()
