"""NoSG (immediate loss, one-step derivatives) against autograd with the state detached after
every token (float64)."""

import pytest

from agents.no_sg import NoSG
from tests.agents.autograd_reference import (
    NEW_CORES,
    assert_all_close,
    chunked_reference,
    core_kwargs,
    learner_grads,
    make_data,
    online_chunked_reference,
    randomise,
    replay_env,
)

B, T, N_IN, N_OUT, H = 3, 6, 3, 4, 5


def build(core, loss="mse", n_batches=1, **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=1, n_batches=n_batches)
    env = replay_env(loss, inputs, targets, scored, B)
    learner = NoSG(
        env, **core_kwargs(core, N_IN, H), hidden_size=H, dtype="float64", seed=1, **kwargs
    )
    randomise(learner.readout, seed=11)
    return learner, (inputs, targets, scored)


@pytest.mark.parametrize(
    "core, loss",
    [(core, loss) for core in ("rnn", "lstm") for loss in ("mse", "ce", "bce")]
    + [(core, "mse") for core in NEW_CORES],
)
def test_gradient_is_autograd_with_the_state_detached_every_token(core, loss):
    learner, data = build(core, loss)
    core_grads, readout_grads, _ = chunked_reference(
        learner.core, learner.readout, loss, *data, n=1
    )
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, core_grads)
    assert_all_close(got_readout, readout_grads)
    assert all(g.abs().max() > 1e-4 for g in core_grads)


@pytest.mark.parametrize(
    "core, activation", [("rnn", "tanh"), ("rnn", "identity"), ("lstm", "tanh")]
)
def test_step_update_applies_adam_after_every_token(core, activation):
    learner, (inputs, targets, scored) = build(
        core,
        "ce",
        n_batches=2,
        activation=activation,
        update="step",
        lr_core=1e-2,
        lr_readout=1e-2,
    )
    want_core, want_readout = online_chunked_reference(
        learner.core, learner.readout, "ce", inputs, targets, scored, 1, B, lr=1e-2
    )
    learner.learn(episodes=2)
    assert_all_close(list(learner.core.parameters()), list(want_core.parameters()))
    assert_all_close(list(learner.readout.parameters()), list(want_readout.parameters()))


def test_frozen_core_stays_put_while_the_readout_learns():
    learner, _ = build("lstm", "mse", lr_core=0.0, lr_readout=1e-2)
    core_before = [p.clone() for p in learner.core.parameters()]
    readout_before = [p.clone() for p in learner.readout.parameters()]
    learner.learn(episodes=2)
    assert_all_close(list(learner.core.parameters()), core_before, rtol=0, atol=0)
    assert all(p.grad is None for p in learner.core.parameters())
    moved = [
        (a - b).abs().max()
        for a, b in zip(learner.readout.parameters(), readout_before, strict=True)
    ]
    assert min(moved) > 1e-3
