"""The adding problem: the stream, the target, the marker placement and the chance level.

The generic API (checkers, vector env = SyncVectorEnv, stream, seeding) is in test_env_api.py.
"""

import math

import gymnasium as gym
import numpy as np
import pytest

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.adding_problem import ADDING_CHANCE_MSE


def run_sequence(env, predictions):
    """Step one sequence with ``predictions`` (T,); return the tokens seen and the step
    results."""
    observation, _ = env.reset()
    tokens, results = [], []
    for prediction in predictions:
        tokens.append(observation)
        observation, reward, terminated, truncated, info = env.step(
            np.array([prediction], np.float32)
        )
        results.append((reward, terminated, truncated, info))
    return np.array(tokens), results


def test_the_target_is_the_sum_of_the_two_marked_values_and_only_the_last_step_is_scored():
    env = gym.make("bpl/AddingProblem-v0", sequence_length=10)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        predictions = rng.normal(1.0, 0.5, size=10).astype(np.float32)
        tokens, results = run_sequence(env, predictions)
        marked = np.flatnonzero(tokens[:, 1])
        assert len(marked) == 2 and marked[0] < 5 <= marked[1]
        assert set(np.unique(tokens[:, 1])) == {0.0, 1.0}
        total = float(tokens[marked, 0].astype(np.float64).sum())
        rewards = [result[0] for result in results]
        assert rewards[:-1] == [0.0] * 9
        last_reward, terminated, truncated, info = results[-1]
        assert terminated and not truncated and info["sequence_end"] and info["scored"]
        expected = (float(predictions[-1]) - total) ** 2
        assert last_reward == pytest.approx(-expected, rel=1e-6, abs=1e-7)
        assert info["loss"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert info["chance_mse"] == 1.0 / 6.0
        assert not any("chance_mse" in result[3] for result in results[:-1])


def test_predicting_one_costs_the_exact_chance_level_one_sixth():
    """Var(U1 + U2) = 1/12 + 1/12; the mean of (S - 1)^2 over 24,000 sequences must be within
    five standard errors (the sd of (S - 1)^2 is sqrt(1/15 - 1/36))."""
    assert ADDING_CHANCE_MSE == pytest.approx(2 * (1 / 12), rel=1e-15)
    num_envs, num_sequences = 4000, 6
    env = gym.make_vec("bpl/AddingProblem-v0", num_envs=num_envs, sequence_length=4)
    env.reset(seed=0)
    ones = np.ones((num_envs, 1), np.float32)
    losses = []
    while len(losses) < num_sequences:
        _, rewards, terminated, _, infos = env.step(ones)
        if terminated.all():
            losses.append(-rewards)
            np.testing.assert_array_equal(infos["chance_mse"], np.full(num_envs, 1 / 6))
            env.reset()
    estimate = np.concatenate(losses)
    standard_error = math.sqrt(1 / 15 - 1 / 36) / math.sqrt(estimate.size)
    assert abs(estimate.mean() - 1 / 6) < 5 * standard_error


def test_markers_are_uniform_in_each_half_and_values_uniform_in_the_unit_interval():
    env = gym.make("bpl/AddingProblem-v0", sequence_length=7)
    inputs, _, _ = env.unwrapped.sample(7000, seed=3)
    first = inputs[:, :3, 1].argmax(1)
    second = 3 + inputs[:, 3:, 1].argmax(1)
    assert (inputs[:, :, 1].sum(1) == 2).all()
    for positions, cells in ((first, 3), (second, 4)):
        counts = np.bincount(positions, minlength=7)[positions.min() : positions.min() + cells]
        expected = len(positions) / cells
        chi_square = float(((counts - expected) ** 2 / expected).sum())
        assert chi_square < 20  # far above the 0.999 quantile with 3 degrees of freedom (16.3)
    values = inputs[:, :, 0]
    assert 0.0 <= values.min() and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 5 * math.sqrt(1 / 12 / values.size)


def test_sample_draws_the_sequences_an_env_seeded_alike_streams():
    env = gym.make("bpl/AddingProblem-v0", sequence_length=6)
    inputs, targets, scored = env.unwrapped.sample(3, seed=5)
    assert inputs.shape == (3, 6, 2) and targets.shape == (3, 6, 1)
    np.testing.assert_array_equal(scored, [False] * 5 + [True])
    observation, _ = env.reset(seed=5)
    for n in range(3):
        tokens = [observation]
        for t in range(6):
            observation, _, terminated, _, info = env.step(np.zeros(1, np.float32))
            np.testing.assert_array_equal(info["target"], targets[n, t])
            if not terminated:
                tokens.append(observation)
        np.testing.assert_array_equal(np.array(tokens), inputs[n])
        observation, _ = env.reset()
    again = env.unwrapped.sample(3, seed=5)
    for a, b in zip(again, (inputs, targets, scored), strict=True):
        np.testing.assert_array_equal(a, b)


def test_render_shows_the_marked_values_and_the_latest_prediction():
    env = gym.make("bpl/AddingProblem-v0", sequence_length=4, render_mode="ansi")
    env.reset(seed=0)
    assert "no prediction received yet" in env.render()
    for _ in range(4):
        _, _, _, _, info = env.step(np.array([0.25], np.float32))
    text = env.render()
    assert f"= {float(info['target'][0]):.3f}" in text and "latest prediction (t=3): 0.250" in text
    assert text.count("[") == 3  # the legend and the two marked values


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sequence_length": 1}, ValueError, "sequence_length must be an int >= 2, got 1"),
        ({"sequence_length": 50.0}, TypeError, "sequence_length must be an int"),
        ({"stream": "yes"}, TypeError, "stream must be a bool, got .yes."),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make("bpl/AddingProblem-v0", **kwargs)
    with pytest.raises(error, match=match):
        gym.make_vec("bpl/AddingProblem-v0", num_envs=2, **kwargs)


@pytest.mark.parametrize(
    "action, error, match",
    [
        (np.zeros(2, np.float32), ValueError, r"action must have shape \(1,\)"),
        (np.zeros(1, np.int64), TypeError, "must be a floating array"),
        (np.array([np.nan], np.float32), ValueError, "must be finite"),
    ],
)
def test_bad_actions_are_refused(action, error, match):
    env = gym.make("bpl/AddingProblem-v0")
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


def test_sample_refuses_bad_arguments():
    env = gym.make("bpl/AddingProblem-v0").unwrapped
    with pytest.raises(ValueError, match="n_sequences must be an int >= 1, got 0"):
        env.sample(0, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        env.sample(2, seed=None)
