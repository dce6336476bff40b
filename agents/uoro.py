"""UORO, unbiased online recurrent optimisation (Tallec & Ollivier, ICLR 2018): RTRL's influence
matrix S_t = ∂s_t/∂θ (d × P per sequence) replaced by a random rank-one estimate s̃_t θ̃_tᵀ whose
expectation is S_t (docs/algorithm.md#online-approximations-of-rtrl).

Per token t and sequence, with ν_t a vector of independent random signs (d,), I_t = (∂s_t/∂θ)_local
and J_t = ∂s_t/∂s_{t-1}:

    ρ0 = sqrt(‖θ̃_{t-1}‖ / (‖J_t s̃_{t-1}‖ + ε)) + ε,     ρ1 = sqrt(‖νᵀI_t‖ / (‖ν‖ + ε)) + ε
    s̃_t = ρ0 J_t s̃_{t-1} + ρ1 ν,                       θ̃_t = θ̃_{t-1} / ρ0 + νᵀI_t / ρ1
    grad θ += (l_t · s̃_t) θ̃_t                           (l_t = dL_t/ds_t, batch-mean loss)

from s̃_{-1} = 0, θ̃_{-1} = 0. Since E[ν νᵀ] = I and the cross terms change sign with ν (ρ1 does
not), E[s̃_t θ̃_tᵀ] = J_t E[s̃_{t-1} θ̃_{t-1}ᵀ] + I_t = S_t: the gradient is unbiased for any ρ0,
ρ1 > 0; this choice (the paper's) minimises the variance the step adds. ‖θ̃‖ is the norm over all
core parameters together. Each sequence of the batch keeps its own estimate and draws its own
signs.

Cost per token: one Jacobian-vector product (O(B·d·H)), one per-sequence parameter VJP
(O(B·P)) and O(B·P) updates; memory B·(d + P). RTRL needs B·d·P numbers and O(B·d·H·P) work.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.local_derivatives import per_sequence_local_vjp
from agents.sequence_learner import SequenceLearner, grad_of
from bpl_envs.checks import check_positive

__all__ = ["UORO"]


class UORO(SequenceLearner):
    """Unbiased online recurrent optimisation: RTRL with a random rank-one influence matrix.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        epsilon: ε > 0 of the scalings ρ0, ρ1 (keeps them finite when a norm is 0).
        **kwargs: ``core`` (any core), ``hidden_size``, ``activation``, ``lr_core``,
            ``lr_readout``, ``update``, ``n_envs``, ``dtype``, ``device``, ``seed``, ``verbose``
            as :class:`~agents.sequence_learner.SequenceLearner`. ``seed`` also seeds the random
            signs; their generator is saved in checkpoints, so a resumed run draws the same signs
            (loaded onto another device type, whose generators differ, a checkpoint draws from a
            generator seeded with ``seed`` instead).
    """

    def __init__(self, env: Any, *, epsilon: float = 1e-7, **kwargs: Any) -> None:
        self.epsilon = check_positive("epsilon", epsilon)
        super().__init__(env, **kwargs)
        self._signs = torch.Generator(device=self.device)
        if self.seed is None:
            self._signs.seed()
        else:
            self._signs.manual_seed(self.seed)

    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)
        self._state_tilde = torch.zeros(
            batch_size, self.core.state_size, dtype=self.dtype, device=self.device
        )
        parameters = self.core.parameters() if self.lr_core > 0 else []
        self._parameter_tilde = [
            torch.zeros(batch_size, *p.shape, dtype=self.dtype, device=self.device)
            for p in parameters
        ]

    def _random_signs(self, batch_size: int) -> torch.Tensor:
        """ν: independent ±1 entries, (B, d)."""
        bits = torch.randint(
            0,
            2,
            (batch_size, self.core.state_size),
            generator=self._signs,
            device=self.device,
            dtype=self.dtype,
        )
        return bits.mul_(2).sub_(1)

    @torch.no_grad()
    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:  # noqa: ARG002 (hook)
        if self.update == "step":
            self._zero_grads()
        l_t = self._immediate_gradient(loss_grad)
        self._watch(loss_grad)
        if self.lr_core > 0:
            self._advance_estimate(l_t.shape[0])
            weights = (l_t * self._state_tilde).sum(-1)  # l_t · s̃_t per sequence, (B,)
            for parameter, tilde in zip(self.core.parameters(), self._parameter_tilde, strict=True):
                grad_of(parameter).add_(torch.tensordot(weights, tilde, dims=1))
            self._watch(*(grad_of(p) for p in self.core.parameters()))
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()

    def _advance_estimate(self, batch_size: int) -> None:
        """s̃_t, θ̃_t from s̃_{t-1}, θ̃_{t-1} (the module docstring's recursion)."""
        eps = self.epsilon
        nu = self._random_signs(batch_size)
        local = [  # νᵀI_t per sequence, (B, *θ.shape)
            grad[:, 0] for grad in per_sequence_local_vjp(self.core, self._cache, nu[:, None, :])
        ]
        propagated = self.core.jvp(self._cache, self._state_tilde)  # J_t s̃_{t-1}, (B, d)
        rho0 = (_norms(self._parameter_tilde) / (propagated.norm(dim=1) + eps)).sqrt() + eps
        rho1 = (_norms(local) / (nu.norm(dim=1) + eps)).sqrt() + eps
        self._state_tilde = propagated.mul_(rho0[:, None]).add_(nu * rho1[:, None])
        for tilde, new in zip(self._parameter_tilde, local, strict=True):
            scale = (1.0 / rho0).view(-1, *[1] * (tilde.dim() - 1))
            tilde.mul_(scale).add_(new / rho1.view_as(scale))

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "epsilon": self.epsilon}

    def _get_state(self) -> dict[str, Any]:
        return {
            **super()._get_state(),
            "sign_generator": self._signs.get_state(),
            "sign_generator_device": self.device.type,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        if state["sign_generator_device"] == self.device.type:
            self._signs.set_state(state["sign_generator"])


def _norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """‖·‖ over every tensor together, per sequence: tensors (B, ...) -> (B,)."""
    return torch.stack([t.flatten(1).square().sum(1) for t in tensors]).sum(0).sqrt()
