"""SnAp-1 against an explicit recursion by autograd (float64): S_t = M ⊙ (J_t S_{t-1} + I_t) with
the sparsity pattern M of the one-step influence I_t, written here from the cores' structure; equal
to RTRL (and BPTT by autograd) where the Jacobian is diagonal."""

import pytest
import torch

from agents.cores import FunctionalCore, GRUCore, make_core
from agents.rtrl import RTRL
from agents.snap import SnAp1
from agents.unit_influence import unit_layout
from tests.agents.autograd_reference import (
    assert_all_close,
    chunked_reference,
    learner_grads,
    make_data,
    randomise,
    replay_env,
)
from tests.agents.influence_reference import forward_mode_reference, rtrl_propagate

B, T, N_IN, N_OUT, H = 2, 5, 2, 3, 3


def build(cls, core, loss="mse", n_batches=1, hidden_size=H, **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=4, n_batches=n_batches)
    env = replay_env(loss, inputs, targets, scored, B)
    learner = cls(env, core=core, hidden_size=hidden_size, dtype="float64", seed=4, **kwargs)
    randomise(learner.readout, seed=41)
    return learner, (inputs, targets, scored)


def one_step_pattern(kind, hidden_size, shape):
    """M (d, *shape): True where a parameter of that shape reaches that state entry in one step.
    Row r of every parameter belongs to gate r // H and unit r % H; the RNN's state is h, the
    LSTM's [h, c], and the LSTM's output gate (the 4th) reaches h but not c."""
    rows = torch.arange(shape[0])
    gate, unit = rows // hidden_size, rows % hidden_size
    d = hidden_size if kind == "rnn" else 2 * hidden_size
    entries = torch.arange(d)
    block, entry_unit = entries // hidden_size, entries % hidden_size
    pattern = entry_unit[:, None] == unit[None, :]
    if kind == "lstm":
        pattern &= ~((block[:, None] == 1) & (gate[None, :] == 3))
    return pattern.view(d, shape[0], *[1] * (len(shape) - 1)).expand(d, *shape).double()


def snap1_propagate(kind, core):
    patterns = [one_step_pattern(kind, core.hidden_size, p.shape) for p in core.parameters()]

    def propagate(jacobian, old, new, index):
        return patterns[index] * rtrl_propagate(jacobian, old, new, index)

    return propagate


@pytest.mark.parametrize(
    "core, activation", [("rnn", "tanh"), ("rnn", "identity"), ("lstm", "tanh")]
)
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_gradient_follows_the_sparse_recursion(core, activation, loss):
    learner, data = build(SnAp1, core, loss, activation=activation)
    want_core, want_readout = forward_mode_reference(
        learner.core, learner.readout, loss, *data, B, snap1_propagate(core, learner.core)
    )
    exact, _ = forward_mode_reference(learner.core, learner.readout, loss, *data, B, rtrl_propagate)
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, want_core)
    assert_all_close(got_readout, want_readout)
    assert max((a - b).abs().max() for a, b in zip(got_core, exact, strict=True)) > 1e-4


@pytest.mark.parametrize("hidden_size, diagonal", [(3, True), (1, False)])
def test_equals_rtrl_and_bptt_where_the_jacobian_is_diagonal(hidden_size, diagonal):
    snap, data = build(SnAp1, "rnn", "ce", hidden_size=hidden_size)
    rtrl, _ = build(RTRL, "rnn", "ce", hidden_size=hidden_size)
    if diagonal:
        weight = torch.diag(torch.tensor([0.9, -0.6, 0.4], dtype=torch.float64))
        for learner in (snap, rtrl):
            with torch.no_grad():
                learner.core.weight_hh.copy_(weight)
    bptt_core, bptt_readout, _ = chunked_reference(snap.core, snap.readout, "ce", *data)
    snap.learn(episodes=1)
    rtrl.learn(episodes=1)
    assert_all_close(learner_grads(snap)[0], bptt_core)
    assert_all_close(learner_grads(snap)[1], bptt_readout)
    assert_all_close(learner_grads(snap)[0], learner_grads(rtrl)[0])
    assert all(g.abs().max() > 1e-4 for g in bptt_core)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_step_updates_follow_the_recursion_online(core):
    learner, data = build(
        SnAp1, core, "ce", n_batches=2, update="step", lr_core=3e-2, lr_readout=3e-2
    )
    want_core, want_readout = forward_mode_reference(
        learner.core, learner.readout, "ce", *data, B, snap1_propagate(core, learner.core), lr=3e-2
    )
    learner.learn(episodes=2)
    assert_all_close(list(learner.core.parameters()), list(want_core.parameters()))
    assert_all_close(list(learner.readout.parameters()), list(want_readout.parameters()))


@pytest.mark.parametrize("core, per_parameter", [("rnn", 1), ("lstm", 2)])
def test_keeps_one_number_per_parameter_and_state_block(core, per_parameter):
    snap, _ = build(SnAp1, core)
    rtrl, _ = build(RTRL, core)
    snap._begin_sequences(B)
    rtrl._begin_sequences(B)
    parameters = sum(p.numel() for p in snap.core.parameters())
    assert sum(s.numel() for s in snap._influence) == B * per_parameter * parameters
    assert sum(s.numel() for s in rtrl._sensitivities) == B * snap.core.state_size * parameters


def test_frozen_core_keeps_no_influence():
    learner, _ = build(SnAp1, "lstm", lr_core=0.0, lr_readout=1e-2)
    before = [p.clone() for p in learner.core.parameters()]
    learner.learn(episodes=1)
    assert learner._influence == []
    assert_all_close(list(learner.core.parameters()), before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "core, name",
    [
        (lambda: GRUCore(2, 2), "GRUCore"),
        (lambda: FunctionalCore(torch.nn.RNNCell(2, 2)), "FunctionalCore"),
        (lambda: make_core("rnn", 2, 2, num_layers=2), "StackedCore"),
    ],
)
def test_cores_without_unit_structure_are_refused_by_name(core, name):
    with pytest.raises(
        ValueError,
        match=rf"SnAp1 needs .*core must be one of \('rnn', 'lstm'\), got a {name}",
    ):
        unit_layout(core(), "SnAp1")
