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

A finite increment whose norm overflows the floating-point type (in float32 every entry near
1e18 or more, as when a learning linear RNN's traces grow over 60 tokens) is still rescaled to
norm 1, its direction computed after dividing it by its largest entry (evaluated naively, the
formula above divides by an infinite norm and adds nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.sequence_learner import grad_of

__all__ = ["SynthIncrements"]


def _clipped_rows(
    rows: torch.Tensor, norms: torch.Tensor, peaks: torch.Tensor, batch: int
) -> torch.Tensor:
    """Each row r of ``rows`` (P, n) as r / max(‖r‖, batch), also where its norm (in ``norms``,
    (P, 1)) overflowed to infinity; ``peaks`` (P, 1) holds each row's largest |entry|."""
    clipped = rows / norms.clamp(min=batch)
    scaled = rows / peaks  # entries in [-1, 1], norm <= sqrt(n)
    unit = scaled / torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
    return torch.where(norms.isinf(), unit, clipped)


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
        """One token's increments, each shaped like its parameter."""
        self.add_per_state(parameters, [increment.unsqueeze(0) for increment in increments], batch)

    def add_per_state(
        self, parameters: Sequence[torch.Tensor], increments: Sequence[torch.Tensor], batch: int
    ) -> list[torch.Tensor]:
        """The increments of P states at once, each (P, *parameter.shape), every state's row
        clipped on its own. Returns each parameter's (P,) largest absolute entry per row: finite
        exactly where the row is (for the finite check, which names the token of a non-finite
        one)."""
        peaks = []
        for parameter, increment in zip(parameters, increments, strict=True):
            rows = increment.reshape(increment.shape[0], -1)
            peak = rows.abs().amax(dim=1, keepdim=True)
            peaks.append(peak.squeeze(1))
            if self.clip:
                norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
                self._rescaled.add_((norms > batch).sum())
                self._counted += rows.shape[0]
                rows = _clipped_rows(rows, norms, peak, batch)
            else:
                rows = rows / batch
            grad_of(parameter).sub_(rows.sum(0).view_as(parameter))
        return peaks

    def clip_fraction(self) -> float | None:
        """The fraction of (token, tensor) increments the clipping rescaled; None without
        clipping or before any increment."""
        if not self._counted:
            return None
        return int(self._rescaled) / self._counted
