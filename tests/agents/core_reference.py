"""Every derivative product of a core against torch autograd through its plain ``forward``
(float64): the checks each kind of core (built-in, stacked, functional) must pass. Nothing here
uses a core's own derivative code for the expected values."""

from __future__ import annotations

import torch
from torch.func import functional_call

TOL = dict(rtol=1e-12, atol=1e-12)


def randomise_core(core, seed, scale=1.0):
    """Overwrite every parameter with N(0, scale²) draws (widened so gates leave their linear
    range and the derivatives differ clearly from their values at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in core.parameters():
            parameter.copy_(
                scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )


def random_inputs(core, batch, seed):
    """A random (x (B, n_in), s (B, d)) in float64."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, core.input_size, generator=generator, dtype=torch.double)
    s = torch.randn(batch, core.state_size, generator=generator, dtype=torch.double)
    return x, s


def autograd_state_jacobian(core, x, s):
    """(B, d, d) per-sample ∂forward/∂s by torch autograd, checking samples do not interact."""
    full = torch.autograd.functional.jacobian(lambda state: core(x, state), s)  # (B, d, B, d)
    per_sample = torch.diagonal(full, dim1=0, dim2=2).permute(2, 0, 1)
    batch = s.shape[0]
    off_diagonal = full.permute(0, 2, 1, 3)[~torch.eye(batch, dtype=torch.bool)]
    assert torch.count_nonzero(off_diagonal) == 0
    return per_sample


def autograd_parameter_jacobians(core, x, s):
    """Per parameter, (B, d, *θ.shape): ∂forward(x, s)/∂θ by torch autograd, s held fixed."""
    names = [name for name, _ in core.named_parameters()]

    def transition(*parameters):
        return functional_call(core, dict(zip(names, parameters, strict=True)), (x, s.detach()))

    return torch.autograd.functional.jacobian(transition, tuple(core.parameters()))


def check_derivatives(core, x, s, seed=0, tol=TOL):
    """jacobian, vjp, jvp (with a scale, into a buffer), the Jacobian operator on row and
    strided column blocks, local_jacobian and local_vjp, each against autograd."""
    batch, d = s.shape
    reference = autograd_state_jacobian(core, x, s)
    with torch.no_grad():
        s_next, cache = core.step(x, s)
    torch.testing.assert_close(s_next, core(x, s), rtol=0, atol=0)
    generator = torch.Generator().manual_seed(seed + 1)
    v = torch.randn(batch, d, generator=generator, dtype=torch.double)
    e = torch.randn(batch, d, 3, 4, generator=generator, dtype=torch.double)

    torch.testing.assert_close(core.jacobian(cache), reference, **tol)
    torch.testing.assert_close(core.vjp(cache, v), torch.einsum("bk,bkj->bj", v, reference), **tol)
    expected = torch.einsum("bkj,bjpq->bkpq", reference, e)
    torch.testing.assert_close(core.jvp(cache, e), expected, **tol)
    out = torch.full_like(e, float("nan"))
    assert core.jvp(cache, e, scale=-0.3, out=out) is out
    torch.testing.assert_close(out, -0.3 * expected, **tol)

    operator = core.jacobian_operator(cache)
    assert operator.shape == (batch, d, d)
    columns = e.reshape(batch, d, 12)
    for rows, cols, scale in [
        (slice(None), slice(None), 1.0),
        (slice(1, batch), slice(2, 9), 0.5),
        (slice(0, 1), slice(0, 12, 5), -2.0),
    ]:
        block = columns[rows, :, cols]
        buffer = torch.full(block.shape, float("nan"), dtype=torch.double)
        operator.apply_block(block, buffer, rows, scale)
        torch.testing.assert_close(
            buffer, scale * torch.einsum("bkj,bjp->bkp", reference[rows], block), **tol
        )

    m = torch.randn(batch, d, generator=generator, dtype=torch.double)
    parameters = list(core.parameters())
    reference_vjp = torch.autograd.grad(core(x, s.detach()), parameters, m)
    local_jacobian = core.local_jacobian(cache)
    local_vjp = core.local_vjp(cache, m)
    assert len(local_jacobian) == len(local_vjp) == len(parameters)
    for mine, theirs in zip(local_jacobian, autograd_parameter_jacobians(core, x, s), strict=True):
        torch.testing.assert_close(mine, theirs, **tol)
    for mine, theirs in zip(local_vjp, reference_vjp, strict=True):
        torch.testing.assert_close(mine, theirs, **tol)
    return reference
