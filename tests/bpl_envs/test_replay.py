"""SequenceReplayVectorEnv: the user's own arrays served as a batched task env."""

import numpy as np
import pytest

from bpl_envs.losses import get_loss
from bpl_envs.replay import SequenceReplayVectorEnv

N, T, N_IN, N_OUT = 6, 4, 3, 2


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(N, T, N_IN)).astype(np.float32)
    inputs[:, 0, 0] = np.arange(N)  # the first token names its sequence
    targets = rng.normal(size=(N, T, N_OUT)).astype(np.float32)
    return inputs, targets


def served(env, batches):
    """Index of each sequence served by ``batches`` resets, per batch."""
    return [env.reset()[0][:, 0].astype(int).tolist() for _ in range(batches)]


def test_steps_pay_minus_the_loss_on_scored_steps_and_mark_the_last_token():
    inputs, targets = arrays()
    scored = np.array([False, True, False, True])
    env = SequenceReplayVectorEnv(inputs, targets, "mse", scored, num_envs=2)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, inputs[:2, 0])
    rng = np.random.default_rng(1)
    for t in range(T):
        actions = rng.normal(size=(2, N_OUT)).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(actions)
        squared = ((actions.astype(np.float64) - targets[:2, t]) ** 2).mean(axis=1)
        expected = squared if scored[t] else np.zeros(2)
        np.testing.assert_allclose(reward, -expected, rtol=1e-12)
        np.testing.assert_allclose(info["loss"], expected, rtol=1e-12)
        np.testing.assert_array_equal(info["target"], targets[:2, t])
        assert info["scored"].tolist() == [scored[t]] * 2
        last = t == T - 1
        assert terminated.tolist() == info["sequence_end"].tolist() == [last] * 2
        assert not truncated.any()
        np.testing.assert_array_equal(obs, np.zeros((2, N_IN)) if last else inputs[:2, t + 1])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros((2, N_OUT), np.float32))


def test_loss_matches_the_shared_loss_function():
    inputs, targets = arrays()
    targets = (targets > 0).astype(np.float32)
    env = SequenceReplayVectorEnv(inputs, targets, "bce", num_envs=3)
    env.reset(seed=0)
    actions = np.array([[30.0, -30.0], [0.5, 2.0], [-4.0, 0.0]], np.float32)
    _, reward, *_ = env.step(actions)
    np.testing.assert_array_equal(
        reward, -get_loss("bce").value(actions.astype(np.float64), targets[:3, 0])
    )


def test_sequential_order_wraps_around_and_random_order_is_a_seeded_permutation_per_pass():
    inputs, targets = arrays()
    sequential = SequenceReplayVectorEnv(inputs, targets, "mse", num_envs=3)
    first = sequential.reset(seed=0)[0][:, 0].astype(int).tolist()
    assert [first, *served(sequential, 2)] == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]

    def random_pass(seed):
        env = SequenceReplayVectorEnv(inputs, targets, "mse", num_envs=2, order="random")
        batches = [env.reset(seed=seed)[0][:, 0].astype(int).tolist(), *served(env, 2)]
        return [index for batch in batches for index in batch]

    one_pass = random_pass(7)
    assert sorted(one_pass) == list(range(N))  # without replacement within a pass
    assert one_pass == random_pass(7)
    assert one_pass == np.random.default_rng(7).permutation(N).tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_envs": 0}, "num_envs must be an int in"),
        ({"num_envs": N + 1}, "num_envs must be an int in"),
        ({"num_envs": 4}, "that divides the 6 sequences"),
        ({"order": "shuffled"}, "order must be 'sequential' or 'random'"),
        ({"scored": np.ones(T + 1, bool)}, "scored must have shape"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    inputs, targets = arrays()
    with pytest.raises(ValueError, match=message):
        SequenceReplayVectorEnv(inputs, targets, "mse", **kwargs)


def test_mismatched_arrays_and_bad_actions_are_refused():
    inputs, targets = arrays()
    with pytest.raises(ValueError, match="same N and T"):
        SequenceReplayVectorEnv(inputs, targets[:, :-1], "mse")
    env = SequenceReplayVectorEnv(inputs, targets, "mse", num_envs=2)
    env.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 2\)"):
        env.step(np.zeros((3, N_OUT), np.float32))
