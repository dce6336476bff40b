"""The loop every recurrent learner shares (agents.sequence_learner): what it differentiates,
how it checks for non-finite values, and what callbacks see."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents import sequence_learner
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT
from agents.finite_watch import FiniteWatch
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.agents.autograd_reference import make_data

B, T, N_IN, N_OUT, H = 3, 6, 3, 2, 4
LEARNERS = {
    "bptt": lambda env: BPTT(env, hidden_size=H, seed=0),
    "bp_lambda": lambda env: BPLambda(env, hidden_size=H, lr_synth=1e-2, seed=0),
    "replay": lambda env: BPLambda(
        env, hidden_size=H, lr_synth=1e-2, seed=0, synth_update="replay"
    ),
}


def parameters(learner):
    return [
        p.detach().clone() for module in learner._modules().values() for p in module.parameters()
    ]


@pytest.mark.parametrize("name", list(LEARNERS))
def test_targets_of_unscored_tokens_are_never_read(name):
    """An unscored token contributes nothing (l_t = 0, as the env pays no loss there): NaN
    targets there change nothing, bit for bit."""
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT, seed=4)
    assert not scored.all() and scored.any()
    poisoned = targets.copy()
    poisoned[:, ~scored] = np.nan
    runs = [
        LEARNERS[name](SequenceReplayVectorEnv(inputs, y, "mse", scored)).learn(episodes=2)
        for y in (targets, poisoned)
    ]
    for p, q in zip(*(parameters(run) for run in runs), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad_token", [1, 5])
def test_a_long_sequence_is_checked_every_watch_limit_tokens(monkeypatch, bad_token):
    """The finite check runs mid-batch once WATCH_LIMIT quantities are kept (bounded memory on
    long sequences) and still names the first non-finite token."""
    monkeypatch.setattr(sequence_learner, "WATCH_LIMIT", 2)
    inputs, targets, _ = make_data("mse", B, T, N_IN, N_OUT)
    targets[:, bad_token] = np.nan
    learner = BPTT(SequenceReplayVectorEnv(inputs, targets, "mse"), hidden_size=H, seed=0)
    checks = []
    check = learner._check_finite

    def counted():
        checks.append(learner._token_index)
        check()

    learner._check_finite = counted
    with pytest.raises(FloatingPointError, match=f"non-finite .* at step {bad_token} "):
        learner.learn(episodes=1)
    assert checks and checks[0] < T - 1  # the first check came before the sequence's end


def test_callbacks_run_with_gradient_tracking_as_the_caller_left_it():
    """The learner's work runs under torch.no_grad; a callback is outside it."""
    seen = []

    class Probe(BaseCallback):
        def _on_step(self):
            seen.append(torch.is_grad_enabled())
            return True

    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT)
    BPTT(SequenceReplayVectorEnv(inputs, targets, "mse", scored), hidden_size=H, seed=0).learn(
        episodes=1, callback=Probe()
    )
    assert seen == [True] * T


def test_the_finite_watch_names_the_first_bad_token_and_forgets():
    watch = FiniteWatch()
    watch.watch(0, torch.ones(2, 3), None)
    watch.watch(1, torch.tensor([1.0, float("inf")]))
    watch.watch_tokens(2, torch.tensor([1.0, float("nan"), 2.0]))  # tokens 2, 3, 4
    watch.watch(5, torch.full((2,), 3e38), torch.full((2,), -3e38))  # huge, but finite
    assert len(watch) == 7
    assert watch.first_non_finite() == 1
    assert len(watch) == 0 and watch.first_non_finite() is None
    watch.watch_tokens(7, torch.tensor([0.0, float("-inf")]))
    watch.watch(3, torch.tensor(float("nan")))
    assert watch.first_non_finite() == 3  # the earliest token, whatever the order watched
