"""BP(lambda)'s offline-equivalent fast path, ``synth_update="forward_view"``, in float64.

Checked against the online trace path (the default) and, independently, against the forward-view
update computed here from autograd Jacobians and an explicit lambda-target recursion.
"""

import copy

import numpy as np
import pytest
import torch

from agents.bp_lambda import BPLambda
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.agents.autograd_reference import (
    EQUIVALENCE_CASES,
    NEW_CORE_CASES,
    core_kwargs,
    forward_view_update,
    randomise,
    unroll,
)

B, T, N_IN, N_OUT, H = 3, 7, 3, 2, 4


def replay_env(seed=0, n_sequences=B):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n_sequences, T, N_IN)).astype(np.float32)
    targets = rng.normal(size=(n_sequences, T, N_OUT)).astype(np.float32)
    scored = rng.random(T) < 0.6
    scored[-1] = True
    return SequenceReplayVectorEnv(inputs, targets, "mse", scored, num_envs=B)


def twin_learners(core, synth_hidden, lam, gamma, **kwargs):
    """A trace-path and a forward-view learner with identical parameters and data."""
    learners = []
    for synth_update in ("trace", "forward_view"):
        learner = BPLambda(
            replay_env(),
            **core_kwargs(core, N_IN, H),
            hidden_size=H,
            dtype="float64",
            seed=0,
            lam=lam,
            gamma=gamma,
            synth_hidden=synth_hidden,
            clip_synth_update=False,
            lr_synth=1e-3,
            synth_update=synth_update,
            **kwargs,
        )
        randomise(learner.synthesiser, seed=1)
        randomise(learner.readout, seed=2)
        learners.append(learner)
    return learners


def autograd_forward_view(learner, lam, gamma):
    """The forward-view update (autograd Jacobians, explicit lambda-target recursion) on the
    batch the learner is about to read (the replay env's first batch)."""
    env = replay_env()
    inputs = torch.tensor(env.inputs[:B], dtype=torch.float64)
    targets = torch.tensor(env.targets[:B], dtype=torch.float64)
    scored = torch.tensor(env.scored[0], dtype=torch.float64)
    synth = copy.deepcopy(learner.synthesiser)
    states, immediate, jacobians = unroll(
        learner.core, learner.readout, learner.loss, inputs, targets, scored
    )
    params = list(synth.trace_parameters())
    return forward_view_update(synth, params, states, immediate, jacobians, lam, gamma)


@pytest.mark.parametrize("core, synth_hidden, lam, gamma", EQUIVALENCE_CASES + NEW_CORE_CASES)
def test_forward_view_equals_the_trace_path_and_autograd(core, synth_hidden, lam, gamma):
    trace, fast = twin_learners(core, synth_hidden, lam, gamma, lr_core=0.0, lr_readout=0.0)
    expected = autograd_forward_view(fast, lam, gamma)
    trace.learn(episodes=1)
    fast.learn(episodes=1)
    for p_trace, p_fast, want in zip(
        trace.synthesiser.trace_parameters(),
        fast.synthesiser.trace_parameters(),
        expected,
        strict=True,
    ):
        torch.testing.assert_close(p_fast.grad, p_trace.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(-p_fast.grad, want, rtol=1e-10, atol=1e-12)
    assert any(w.abs().max() > 1e-3 for w in expected)  # not vacuous


@pytest.mark.parametrize("core", ["rnn", "lstm", "gru-2", "functional-gru"])
def test_forward_view_learns_the_same_parameters_over_several_sequences(core):
    """Everything learns (core, readout, synthesiser, Adam): after three batches of sequences
    the two paths hold the same parameters."""
    trace, fast = twin_learners(core, 5, 0.7, 0.9, lr_core=1e-2, lr_readout=1e-2)
    trace.learn(episodes=3)
    fast.learn(episodes=3)
    for name in ("core", "readout", "synthesiser"):
        for p, q in zip(
            getattr(trace, name).parameters(), getattr(fast, name).parameters(), strict=True
        ):
            torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12)
    moved = [p for p in fast.synthesiser.trace_parameters() if p.abs().max() > 0]
    assert moved  # the output layer started at zero and has learned


def test_forward_view_survives_save_and_load(tmp_path):
    learner = BPLambda(
        replay_env(), hidden_size=H, synth_update="forward_view", clip_synth_update=False, seed=0
    )
    learner.learn(episodes=1).save(tmp_path / "fast")
    loaded = BPLambda.load(tmp_path / "fast", env=replay_env())
    assert loaded.synth_update == "forward_view"
    loaded.learn(episodes=1)


def test_a_non_finite_forward_view_update_stops_learning():
    learner = BPLambda(
        replay_env(), hidden_size=H, synth_update="forward_view", clip_synth_update=False, seed=0
    )

    def overflowing_vjp(_cache, u):  # only the end-of-sequence recursion uses vjp on this path
        return torch.full_like(u, float("inf"))

    learner.core.vjp = overflowing_vjp
    message = f"non-finite loss gradient or update at step {T - 1} "  # the last token
    with pytest.raises(FloatingPointError, match=message):
        learner.learn(episodes=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"synth_update": "forward_view", "update": "step", "clip_synth_update": False},
            r"synth_update='forward_view' needs update='sequence'.*got update='step'",
        ),
        (
            {"synth_update": "forward_view"},
            r"synth_update='forward_view' cannot be combined with clip_synth_update=True",
        ),
        (
            {"synth_update": "offline"},
            r"synth_update must be one of \('trace', 'replay', 'forward_view'\), got 'offline'",
        ),
    ],
)
def test_impossible_combinations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BPLambda(replay_env(), **kwargs)
