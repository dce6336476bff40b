"""RTRL against autograd (float64): offline it is exactly BPTT's gradient; online (update="step")
it follows the sensitivity recursion with Jacobians taken at the current parameters, checked
against an explicit recursion whose Jacobians come from torch.autograd.functional.jacobian."""

import copy

import pytest
import torch

from agents.bptt import BPTT
from agents.rtrl import RTRL
from tests.agents.autograd_reference import (
    ADAM,
    NEW_CORES,
    assert_all_close,
    chunked_reference,
    core_kwargs,
    learner_grads,
    make_data,
    randomise,
    replay_env,
    step_loss,
)

B, T, N_IN, N_OUT, H = 2, 5, 2, 3, 3


def build(cls, core, loss="mse", n_batches=1, **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=2, n_batches=n_batches)
    env = replay_env(loss, inputs, targets, scored, B)
    learner = cls(
        env, **core_kwargs(core, N_IN, H), hidden_size=H, dtype="float64", seed=2, **kwargs
    )
    randomise(learner.readout, seed=21)
    return learner, (inputs, targets, scored)


@pytest.mark.parametrize(
    "core, activation, loss",
    [
        (core, activation, loss)
        for core, activation in [("rnn", "tanh"), ("rnn", "identity"), ("lstm", "tanh")]
        for loss in ("mse", "ce")
    ]
    + [(core, "tanh", "ce") for core in NEW_CORES],
)
def test_offline_gradient_is_bptt_by_autograd(core, activation, loss):
    learner, data = build(RTRL, core, loss, activation=activation)
    core_grads, readout_grads, _ = chunked_reference(learner.core, learner.readout, loss, *data)
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, core_grads)
    assert_all_close(got_readout, readout_grads)
    assert all(g.abs().max() > 1e-4 for g in core_grads)


@pytest.mark.parametrize("core", ["rnn", "lstm", *NEW_CORES])
def test_offline_learning_equals_the_bptt_learner(core):
    kwargs = {"n_batches": 2, "lr_core": 1e-2, "lr_readout": 1e-2}
    rtrl, _ = build(RTRL, core, "ce", **kwargs)
    bptt, _ = build(BPTT, core, "ce", **kwargs)
    rtrl.learn(episodes=3)
    bptt.learn(episodes=3)
    assert_all_close(list(rtrl.core.parameters()), list(bptt.core.parameters()))
    assert_all_close(list(rtrl.readout.parameters()), list(bptt.readout.parameters()))


def online_rtrl_reference(core, readout, kind, inputs, targets, scored, lr):
    """S_t = J_t S_{t-1} + ds_t/dW|local, grad W = l_t . S_t, Adam after every token; J_t and the
    local derivatives by autograd at the parameters of the moment. Returns module copies."""
    core, readout = copy.deepcopy(core), copy.deepcopy(readout)
    names = [name for name, _ in core.named_parameters()]
    optimizers = [torch.optim.Adam(m.parameters(), lr=lr, **ADAM) for m in (core, readout)]
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    for first in range(0, x.shape[0], B):
        rows = slice(first, first + B)
        state = torch.zeros(B, core.state_size, dtype=torch.float64)
        sensitivities = [
            torch.zeros(B, core.state_size, *p.shape, dtype=torch.float64)
            for p in core.parameters()
        ]
        for t in range(T):
            x_t = x[rows, t]
            full = torch.autograd.functional.jacobian(lambda s, x_t=x_t: core(x_t, s), state)
            jacobian = torch.stack([full[b, :, b, :] for b in range(B)])
            local = torch.autograd.functional.jacobian(
                lambda *ps, x_t=x_t, s=state: torch.func.functional_call(
                    core, dict(zip(names, ps, strict=True)), (x_t, s)
                ),
                tuple(core.parameters()),
            )
            sensitivities = [
                torch.einsum("bij,bj...->bi...", jacobian, old) + new
                for old, new in zip(sensitivities, local, strict=True)
            ]
            state = core(x_t, state).detach().requires_grad_(True)
            loss = float(scored[t]) * step_loss(kind, readout(core.hidden(state)), y[rows, t])
            l_t, *readout_grads = torch.autograd.grad(loss.mean(), [state, *readout.parameters()])
            for p, sensitivity in zip(core.parameters(), sensitivities, strict=True):
                p.grad = torch.einsum("bi,bi...->...", l_t, sensitivity)
            for p, grad in zip(readout.parameters(), readout_grads, strict=True):
                p.grad = grad
            for optimizer in optimizers:
                optimizer.step()
            state = state.detach()
    return core, readout


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_online_updates_follow_the_sensitivity_recursion(core):
    learner, data = build(
        RTRL, core, "ce", n_batches=2, update="step", lr_core=3e-2, lr_readout=3e-2
    )
    want_core, want_readout = online_rtrl_reference(
        learner.core, learner.readout, "ce", *data, lr=3e-2
    )
    learner.learn(episodes=2)
    assert_all_close(list(learner.core.parameters()), list(want_core.parameters()))
    assert_all_close(list(learner.readout.parameters()), list(want_readout.parameters()))
    offline, _ = build(RTRL, core, "ce", n_batches=2, lr_core=3e-2, lr_readout=3e-2)
    offline.learn(episodes=2)
    gap = max(
        (a - b).abs().max()
        for a, b in zip(learner.core.parameters(), offline.core.parameters(), strict=True)
    )
    assert gap > 1e-3  # online and offline really differ


def test_frozen_core_keeps_no_sensitivities():
    learner, _ = build(RTRL, "lstm", "mse", lr_core=0.0, lr_readout=1e-2)
    before = [p.clone() for p in learner.core.parameters()]
    learner.learn(episodes=1)
    assert learner._sensitivities == []
    assert_all_close(list(learner.core.parameters()), before, rtol=0, atol=0)
