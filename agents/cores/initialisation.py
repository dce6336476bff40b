"""Initialisations of the recurrent weight matrix W_hh (G·H, H) of the built-in cores.

``"uniform"`` (the default) keeps every parameter's U(−1/√H, 1/√H) draw, as torch's recurrent
layers and the authors' code do; its spectral radius is well below 1 for large H (about
1/√3 ≈ 0.58), so without input the state of a linear RNN decays geometrically. ``"orthogonal"``
replaces each gate's (H, H) block of W_hh by a random orthogonal matrix (all eigenvalues on the
unit circle: the state neither decays nor grows). ``spectral_radius=r`` then rescales each block
so that its largest eigenvalue modulus is r (for an orthogonal block, r · Q).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bpl_envs.checks import check_positive

__all__ = ["RECURRENT_INITS", "check_recurrent_init", "init_recurrent_"]

RECURRENT_INITS = ("uniform", "orthogonal")


def check_recurrent_init(
    recurrent_init: object, spectral_radius: object
) -> tuple[str, float | None]:
    """Return ``(recurrent_init, spectral_radius)`` checked (the radius as a float or None)."""
    if not isinstance(recurrent_init, str):
        raise TypeError(
            f"recurrent_init must be one of {RECURRENT_INITS}, got {recurrent_init!r} "
            f"({type(recurrent_init).__name__})"
        )
    if recurrent_init not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}, got {recurrent_init!r}")
    if spectral_radius is None:
        return recurrent_init, None
    return recurrent_init, check_positive("spectral_radius", spectral_radius)


@torch.no_grad()
def init_recurrent_(
    weight_hh: Tensor, num_gates: int, recurrent_init: str, spectral_radius: float | None
) -> None:
    """Initialise W_hh (G·H, H) in place, one (H, H) block per gate (draws from torch's global
    random generator; ``"uniform"`` without a radius leaves W_hh as it is)."""
    blocks = weight_hh.view(num_gates, weight_hh.shape[1], weight_hh.shape[1])
    for block in blocks:
        if recurrent_init == "orthogonal":
            nn.init.orthogonal_(block)
        if spectral_radius is not None:
            if recurrent_init == "orthogonal":  # every eigenvalue has modulus 1
                block.mul_(spectral_radius)
                continue
            radius = torch.linalg.eigvals(block.double()).abs().max().item()
            if radius == 0.0:
                raise ValueError("cannot rescale a recurrent block whose spectral radius is 0")
            block.mul_(spectral_radius / radius)
