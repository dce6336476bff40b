"""Real-time recurrent learning (Williams & Zipser 1989): the exact gradient, computed forwards.

Each token t carries the sensitivity of the state to every core parameter W,

    S_t = J_t S_{t-1} + (ds_t/dW)_local,      S_{-1} = 0,      shape (B, d, *W.shape)

(J_t = ds_t/ds_{t-1}), and the core's gradient is grad W += sum_b l_t . S_t with l_t = dL_t/ds_t
of the batch-mean loss. Summed over a sequence this is exactly BPTT's gradient, available at
every token instead of after the last one.

Cost: for P core parameters, S holds B·d·P numbers per buffer (two buffers) and each token costs
O(B·d²·P) multiply-adds, O(B·H⁴) for an RNN with H units: a reference for small cores, not a
learner for large ones.
"""

from __future__ import annotations

import torch

from agents.sequence_learner import SequenceLearner, grad_of

__all__ = ["RTRL"]


class RTRL(SequenceLearner):
    """Exact real-time recurrent learning, for small cores (cost in the module docstring).

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        update: ``"sequence"`` accumulates over the batch of sequences and applies after its last
            token: the exact gradient (equal to BPTT's). ``"step"`` applies after every token
            (truly online); the sensitivities then mix derivatives taken at the parameters of
            earlier tokens, so the gradient is approximate, as in RTRL practice.
        core, hidden_size, activation, num_layers, recurrent_init, spectral_radius, lr_core,
        lr_readout, n_envs, dtype, device, seed, verbose: as
            :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)
        d = self.core.state_size
        parameters = self.core.parameters() if self.lr_core > 0 else []
        self._sensitivities = [
            torch.zeros(batch_size, d, *p.shape, dtype=self.dtype, device=self.device)
            for p in parameters
        ]
        self._scratch = [torch.empty_like(s) for s in self._sensitivities]

    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:  # noqa: ARG002 (hook)
        if self.update == "step":
            self._zero_grads()
        l_t = self._immediate_gradient(loss_grad)
        self._watch(loss_grad)
        if self.lr_core > 0:
            self._advance_sensitivities()
            for parameter, sensitivity in zip(
                self.core.parameters(), self._sensitivities, strict=True
            ):
                grad_of(parameter).add_(torch.tensordot(l_t, sensitivity, dims=2))
            self._watch(*(grad_of(p) for p in self.core.parameters()))
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()

    def _advance_sensitivities(self) -> None:
        """S_t = J_t S_{t-1} + (ds_t/dW)_local for every core parameter, into the spare buffers."""
        cache = self._cache
        for index, local in enumerate(self.core.local_jacobian(cache)):
            previous = self._sensitivities[index]
            current = self.core.jvp(cache, previous, out=self._scratch[index]).add_(local)
            self._sensitivities[index], self._scratch[index] = current, previous
