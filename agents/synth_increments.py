"""BP(λ)'s synthesiser increments into the gradients, clipped per token as the reference code does.

A token's increment of a synthesiser tensor θ is Δθ = Σ_b δ_b · e_b over the batch of B
sequences. It enters θ's gradient (which the optimiser then descends) as

    grad -= Δθ / B                      without clipping,
    grad -= Δθ / max(‖Δθ‖, B)           with clipping: (Δθ / B) rescaled to norm ≤ 1,

each token and each tensor on its own (the authors' code clips every token's update). The
replay path hands over the increments of several states at once, one row per state; each row is
clipped on its own, so both paths add the same numbers. :class:`SynthIncrements` also counts how
many (token, tensor) increments the clipping rescaled, which BP(λ) logs as
``train/synth_clip_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.sequence_learner import grad_of

__all__ = ["SynthIncrements"]


class SynthIncrements:
    """Adds increments to the gradients of the synthesiser's parameters for one batch.

    Args:
        clip: rescale each (token, tensor) increment divided by B to norm ≤ 1.
        device: where the count of rescaled increments lives (no host sync per token).
    """

    def __init__(self, clip: bool, device: torch.device | str) -> None:
        self.clip = clip
        self._rescaled = torch.zeros((), dtype=torch.long, device=device)
        self._counted = 0  # (token, tensor) increments seen by the clipping

    def add(
        self, parameters: Sequence[torch.Tensor], increments: Sequence[torch.Tensor], batch: int
    ) -> None:
        """One token's increments, each shaped like its parameter (they may be overwritten)."""
        for parameter, increment in zip(parameters, increments, strict=True):
            if self.clip:  # (inc / B) / max(|inc / B|, 1) = inc / max(|inc|, B)
                norm = increment.norm()
                self._rescaled.add_(norm > batch)
                self._counted += 1
                grad_of(parameter).addcdiv_(increment, norm.clamp(min=batch), value=-1.0)
            else:
                grad_of(parameter).sub_(increment.div_(batch))

    def add_per_state(
        self, parameters: Sequence[torch.Tensor], increments: Sequence[torch.Tensor], batch: int
    ) -> list[torch.Tensor]:
        """The increments of P states at once, each (P, *parameter.shape), every state's row
        clipped on its own. Returns each parameter's (P,) increment norms (for the finite
        check, which names the token of a non-finite one)."""
        norms_per_parameter = []
        for parameter, increment in zip(parameters, increments, strict=True):
            per_state = increment.view(increment.shape[0], -1)
            norms = torch.linalg.vector_norm(per_state, dim=1)
            norms_per_parameter.append(norms)
            if self.clip:
                self._rescaled.add_((norms > batch).sum())
                self._counted += norms.numel()
                per_state = per_state / norms.clamp(min=batch).unsqueeze(1)
                grad_of(parameter).sub_(per_state.sum(0).view_as(parameter))
            else:
                grad_of(parameter).sub_(per_state.sum(0).view_as(parameter), alpha=1.0 / batch)
        return norms_per_parameter

    def clip_fraction(self) -> float | None:
        """The fraction of (token, tensor) increments the clipping rescaled; None without
        clipping or before any increment."""
        if not self._counted:
            return None
        return int(self._rescaled) / self._counted
