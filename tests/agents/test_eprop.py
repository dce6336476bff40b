"""e-prop against its published recursion (float64): for the LSTM, the eligibility vector
ε_t = σ(f_t) ε_{t-1} + ∂c_t/∂θ and trace e_t = ∂h_t/∂c_t ε_t + ∂h_t/∂θ (Bellec et al. 2020),
written here with the LSTM's equations and autograd; for the tanh/identity RNN, whose units have
no internal state besides their output (zero trace decay), exactly the NoSG learner and
autograd with the state detached after every token."""

import copy

import pytest
import torch

from agents.eprop import EProp
from agents.no_sg import NoSG
from tests.agents.autograd_reference import (
    assert_all_close,
    chunked_reference,
    learner_grads,
    make_data,
    randomise,
    replay_env,
    step_loss,
)

B, T, N_IN, N_OUT, H = 2, 5, 2, 3, 3


def build(cls, core, loss="mse", n_batches=1, **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=6, n_batches=n_batches)
    env = replay_env(loss, inputs, targets, scored, B)
    learner = cls(env, core=core, hidden_size=H, dtype="float64", seed=6, **kwargs)
    randomise(learner.readout, seed=61)
    return learner, (inputs, targets, scored)


def lstm_gates(parameters, x, h):
    """σ(i), σ(f), tanh(g), σ(o) of a = W_ih x + W_hh h + b (gate order i, f, g, o)."""
    weight_ih, weight_hh, bias = parameters
    a = x @ weight_ih.T + h @ weight_hh.T + bias
    i, f, g, o = a.split(a.shape[1] // 4, dim=1)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def eprop_lstm_reference(core, readout, kind, inputs, targets, scored):
    """Σ_t L_t · e_t with L_t = dL_t/dh_t through the readout; h_{t-1}, c_{t-1} held fixed in
    every partial derivative. Returns (core grads, readout grads)."""
    readout = copy.deepcopy(readout)
    parameters = tuple(p.detach().clone() for p in core.parameters())
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    h = c = torch.zeros(x.shape[0], core.hidden_size, dtype=torch.float64)
    epsilon = [
        torch.zeros(x.shape[0], core.hidden_size, *p.shape, dtype=torch.float64) for p in parameters
    ]
    core_grads = [torch.zeros_like(p) for p in parameters]
    readout_grads = [torch.zeros_like(p) for p in readout.parameters()]
    for t in range(x.shape[1]):
        x_t, h_prev, c_prev = x[:, t], h, c

        def cell(*ps, x_t=x_t, h_prev=h_prev, c_prev=c_prev):
            i, f, g, _ = lstm_gates(ps, x_t, h_prev)
            return f * c_prev + i * g

        _, forget, _, output = lstm_gates(parameters, x_t, h_prev)
        c = cell(*parameters)

        def hidden_at_fixed_cell(*ps, x_t=x_t, h_prev=h_prev, c=c):
            return lstm_gates(ps, x_t, h_prev)[3] * torch.tanh(c)

        dc = torch.autograd.functional.jacobian(cell, parameters)
        dh = torch.autograd.functional.jacobian(hidden_at_fixed_cell, parameters)
        dh_dc = output * (1 - torch.tanh(c).square())
        h = (output * torch.tanh(c)).requires_grad_(True)
        loss = float(scored[t]) * step_loss(kind, readout(h), y[:, t])
        signal, *head = torch.autograd.grad(loss.mean(), [h, *readout.parameters()])
        for index, (eps, dc_p, dh_p) in enumerate(zip(epsilon, dc, dh, strict=True)):
            trailing = [1] * (eps.dim() - 2)
            epsilon[index] = forget.view(*forget.shape, *trailing) * eps + dc_p
            trace = dh_dc.view(*dh_dc.shape, *trailing) * epsilon[index] + dh_p
            core_grads[index] += torch.einsum("bh,bh...->...", signal, trace)
        readout_grads = [a + b for a, b in zip(readout_grads, head, strict=True)]
        h = h.detach()
    return core_grads, readout_grads


@pytest.mark.parametrize("loss", ["mse", "ce", "bce"])
def test_lstm_gradient_is_the_published_eligibility_recursion(loss):
    learner, data = build(EProp, "lstm", loss)
    want_core, want_readout = eprop_lstm_reference(learner.core, learner.readout, loss, *data)
    immediate, _, _ = chunked_reference(learner.core, learner.readout, loss, *data, n=1)
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, want_core)
    assert_all_close(got_readout, want_readout)
    assert max((a - b).abs().max() for a, b in zip(got_core, immediate, strict=True)) > 1e-4


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_rnn_is_nosg_and_autograd_with_the_state_detached(activation):
    eprop, data = build(EProp, "rnn", "ce", activation=activation)
    nosg, _ = build(NoSG, "rnn", "ce", activation=activation)
    want_core, want_readout, _ = chunked_reference(eprop.core, eprop.readout, "ce", *data, n=1)
    eprop.learn(episodes=1)
    nosg.learn(episodes=1)
    assert_all_close(learner_grads(eprop)[0], want_core)
    assert_all_close(learner_grads(eprop)[1], want_readout)
    assert_all_close(learner_grads(eprop)[0], learner_grads(nosg)[0])


def test_rnn_step_updates_equal_nosg():
    kwargs = {"n_batches": 2, "update": "step", "lr_core": 3e-2, "lr_readout": 3e-2}
    eprop, _ = build(EProp, "rnn", "ce", **kwargs)
    nosg, _ = build(NoSG, "rnn", "ce", **kwargs)
    eprop.learn(episodes=2)
    nosg.learn(episodes=2)
    assert_all_close(list(eprop.core.parameters()), list(nosg.core.parameters()))
    assert_all_close(list(eprop.readout.parameters()), list(nosg.readout.parameters()))
