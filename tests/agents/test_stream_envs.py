"""Learners and the alignment diagnostic read ``stream=True`` envs (which never terminate).

LineDraw streams the same sequence every time, so a learner must end up with exactly the
parameters it reaches on the terminating env: the batch boundary comes from
``info["sequence_end"]`` instead of ``terminated``, and nothing else changes.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import bpl_envs  # noqa: F401  (registers the ids)
from agents import BPTT, BPLambda, TruncatedBPTT
from agents.analysis import alignment


def line_draw(stream: bool, num_envs: int = 3):
    return gym.make_vec("bpl/LineDraw-v0", num_envs=num_envs, sequence_length=6, stream=stream)


def parameters(learner):
    return {
        f"{name}.{key}": value.clone()
        for name, module in learner._modules().items()
        for key, value in module.state_dict().items()
    }


@pytest.mark.parametrize(
    "make_learner",
    [
        lambda env: BPLambda(env, hidden_size=8, lam=0.5, lr_synth=1e-2, seed=0),
        lambda env: BPLambda(env, hidden_size=8, update="step", seed=0),
        lambda env: BPLambda(
            env,
            hidden_size=8,
            lam=0.5,
            lr_synth=1e-2,
            seed=0,
            synth_update="replay",
            replay_window=4,
        ),
        lambda env: BPLambda(env, hidden_size=8, update="step", seed=0, synth_update="replay"),
        lambda env: BPTT(env, hidden_size=8, seed=0),
        lambda env: TruncatedBPTT(env, n=2, hidden_size=8, seed=0),
    ],
    ids=["bp_lambda", "bp_lambda-step", "replay-window", "replay-step", "bptt", "tbptt"],
)
def test_a_stream_env_trains_exactly_like_the_terminating_env(make_learner):
    plain = make_learner(line_draw(stream=False)).learn(episodes=4)
    stream = make_learner(line_draw(stream=True)).learn(episodes=4)
    assert stream.num_episodes == plain.num_episodes == 4
    assert stream.num_timesteps == plain.num_timesteps == 4 * 6 * 3
    plain_parameters = parameters(plain)
    changed = 0
    for key, value in parameters(stream).items():
        torch.testing.assert_close(value, plain_parameters[key], rtol=0, atol=0, msg=key)
        changed += 0 if torch.equal(value, parameters(make_learner(line_draw(False)))[key]) else 1
    assert changed > 0  # learning happened, so the equality says something


def test_a_stream_env_batch_ends_at_each_sequence_boundary():
    env = gym.make_vec("bpl/SequentialDigits-v0", num_envs=4, stream=True)
    learner = BPTT(env, hidden_size=8, seed=0).learn(total_timesteps=3 * 8 * 4)
    assert learner.num_episodes == 3
    assert learner.num_timesteps == 96


def test_alignment_on_a_stream_env_equals_alignment_on_the_terminating_env():
    learner = BPLambda(line_draw(False), hidden_size=8, lr_synth=1e-2, seed=0).learn(episodes=5)
    plain = alignment(learner, line_draw(False), n_sequences=3, seed=0)
    stream = alignment(learner, line_draw(True), n_sequences=3, seed=0)
    np.testing.assert_array_equal(stream, plain)
    assert plain.shape == (5,) and np.abs(plain).min() > 0
