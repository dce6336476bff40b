"""Forward-mode gradients with an approximate influence matrix, by autograd: the reference for
the online approximations of RTRL (SnAp-1, e-prop, UORO). Jacobians J_t = ∂s_t/∂s_{t-1} and
one-step parameter derivatives I_t = (∂s_t/∂θ)_local come from torch.autograd.functional on the
core's plain differentiable ``forward``; nothing here uses the cores' analytic derivatives or the
learners' code."""

from __future__ import annotations

import copy

import torch

from tests.agents.autograd_reference import ADAM, step_loss


def step_derivatives(core, x_t, state):
    """(J_t (B, d, d), [I_t (B, d, *θ.shape) per parameter]) at ``state`` by autograd."""
    batch = state.shape[0]
    names = [name for name, _ in core.named_parameters()]
    full = torch.autograd.functional.jacobian(lambda s: core(x_t, s), state)
    jacobian = torch.stack([full[b, :, b, :] for b in range(batch)])
    local = torch.autograd.functional.jacobian(
        lambda *ps: torch.func.functional_call(
            core, dict(zip(names, ps, strict=True)), (x_t, state)
        ),
        tuple(core.parameters()),
    )
    return jacobian, list(local)


def forward_mode_reference(core, readout, kind, inputs, targets, scored, batch, propagate, lr=None):
    """grad θ = Σ_t l_t · S_t with S_t = propagate(J_t, S_{t-1}, I_t, index of θ), S_{-1} = 0.

    Sequences are taken ``batch`` at a time. With ``lr`` None, returns (core grads, readout
    grads) of the first batch (nothing applied); with ``lr``, Adam is applied after every token
    (the derivatives taken at the parameters of the moment) and the module copies are returned.
    """
    core, readout = copy.deepcopy(core), copy.deepcopy(readout)
    optimizers = (
        [torch.optim.Adam(m.parameters(), lr=lr, **ADAM) for m in (core, readout)]
        if lr is not None
        else []
    )
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    steps = x.shape[1]
    for first in range(0, x.shape[0], batch):
        rows = slice(first, first + batch)
        state = torch.zeros(batch, core.state_size, dtype=torch.float64)
        influence = [
            torch.zeros(batch, core.state_size, *p.shape, dtype=torch.float64)
            for p in core.parameters()
        ]
        core_grads = [torch.zeros_like(p) for p in core.parameters()]
        readout_grads = [torch.zeros_like(p) for p in readout.parameters()]
        for t in range(steps):
            jacobian, local = step_derivatives(core, x[rows, t], state)
            influence = [
                propagate(jacobian, old, new, index)
                for index, (old, new) in enumerate(zip(influence, local, strict=True))
            ]
            state = core(x[rows, t], state).detach().requires_grad_(True)
            loss = float(scored[t]) * step_loss(kind, readout(core.hidden(state)), y[rows, t])
            l_t, *head = torch.autograd.grad(loss.mean(), [state, *readout.parameters()])
            step = [torch.einsum("bi,bi...->...", l_t, s) for s in influence]
            if lr is None:
                core_grads = [a + b for a, b in zip(core_grads, step, strict=True)]
                readout_grads = [a + b for a, b in zip(readout_grads, head, strict=True)]
                continue
            for p, grad in zip(
                [*core.parameters(), *readout.parameters()], [*step, *head], strict=True
            ):
                p.grad = grad
            for optimizer in optimizers:
                optimizer.step()
            state = state.detach()
        if lr is None:
            return core_grads, readout_grads
    return core, readout


def rtrl_propagate(jacobian, old, new, _index):
    """S_t = J_t S_{t-1} + I_t (exact RTRL)."""
    return torch.einsum("bij,bj...->bi...", jacobian, old) + new
