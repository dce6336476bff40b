"""The shared single/vector env machinery: validation, ordering errors, seeding, autoreset."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.copy_repeat import CopyRepeatEnv, CopyRepeatVectorEnv
from bpl_envs.line_draw import LineDrawEnv
from bpl_envs.sequence import as_prediction


@pytest.mark.parametrize(
    ("action", "error", "message"),
    [
        (np.zeros(8, np.float32), ValueError, r"must have shape \(9,\), got \(8,\)"),
        (np.zeros((1, 9), np.float32), ValueError, r"must have shape \(9,\), got \(1, 9\)"),
        (np.zeros(9, np.int64), TypeError, r"must be a floating array .* got dtype int64"),
        (np.zeros(9, bool), TypeError, r"must be a floating array .* got dtype bool"),
        (np.full(9, np.nan), ValueError, r"must be finite, got 9 NaN or inf entries"),
        (np.array([np.inf] + [0.0] * 8), ValueError, r"must be finite, got 1 NaN or inf entries"),
    ],
)
def test_bad_actions_are_rejected_with_a_clear_error(action, error, message):
    env = CopyRepeatEnv()
    env.reset(seed=0)
    with pytest.raises(error, match="^action " + message):
        env.step(action)
    vector = gym.make_vec("bpl/CopyRepeat-v0", num_envs=1)
    vector.reset(seed=0)
    with pytest.raises(error, match="^actions must"):
        vector.step(action[None])
    with pytest.raises(ValueError, match=r"actions must have shape \(1, 9\), got \(9,\)"):
        vector.step(np.zeros(9, np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_any_floating_dtype_is_scored_as_is_in_float64(dtype):
    logits = np.array([3.5, -40.0, 0.125, 7.0, -1.0, 2.0, 0.0, -0.5, 12.0], dtype=dtype)
    assert as_prediction(logits, (9,)).dtype == np.float64
    env = CopyRepeatEnv()
    env.reset(seed=0)
    for _ in range(4):
        *_, info = env.step(logits)
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor(logits.astype(np.float64)), torch.tensor(info["target"], dtype=torch.float64)
    ).item()
    assert info["scored"] and info["loss"] == pytest.approx(expected, rel=1e-13)


def test_step_before_reset_and_after_the_last_token_raise_reset_needed():
    env = LineDrawEnv(sequence_length=2)
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ResetNeeded, match="call reset"):
        LineDrawEnv(render_mode="ansi").render()
    env.reset()
    env.step(np.zeros(2, np.float32))
    assert env.step(np.zeros(2, np.float32))[2] is True
    with pytest.raises(ResetNeeded, match="the sequence has ended"):
        env.step(np.zeros(2, np.float32))
    env.reset()
    assert env.step(np.zeros(2, np.float32))[2] is False


def test_disabled_autoreset_requires_a_reset_after_the_last_token():
    vector = gym.make_vec(
        "bpl/LineDraw-v0", num_envs=2, sequence_length=1, autoreset_mode=AutoresetMode.DISABLED
    )
    with pytest.raises(ResetNeeded, match="call reset"):
        vector.step(np.zeros((2, 2), np.float32))
    vector.reset()
    assert vector.step(np.zeros((2, 2), np.float32))[2].all()
    with pytest.raises(ResetNeeded, match="the sequence has ended"):
        vector.step(np.zeros((2, 2), np.float32))


def test_next_step_autoreset_step_ignores_the_action_and_returns_first_tokens():
    vector = gym.make_vec("bpl/LineDraw-v0", num_envs=3, sequence_length=2)
    first, _ = vector.reset()
    actions = np.ones((3, 2), np.float32)
    vector.step(actions)
    observations, rewards, terminations, truncations, info = vector.step(actions)
    assert terminations.all() and not truncations.any() and info["scored"].all()
    np.testing.assert_array_equal(observations, np.zeros((3, 10), np.float32))
    observations, rewards, terminations, truncations, info = vector.step(actions)
    np.testing.assert_array_equal(observations, first)
    assert info == {} and not terminations.any() and not rewards.any()


def test_same_step_autoreset_puts_the_terminal_step_in_final_info():
    vector = gym.make_vec(
        "bpl/LineDraw-v0", num_envs=2, sequence_length=1, autoreset_mode="SameStep"
    )
    first, _ = vector.reset()
    observations, rewards, terminations, _, info = vector.step(np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(observations, first)
    assert terminations.all() and list(info) == [
        "final_obs",
        "_final_obs",
        "final_info",
        "_final_info",
    ]
    assert all(np.array_equal(o, np.zeros(10, np.float32)) for o in info["final_obs"])
    np.testing.assert_allclose(info["final_info"]["loss"], [0.5, 0.5])  # mean((1,1)-(0,1))^2
    np.testing.assert_array_equal(rewards, [-0.5, -0.5])


def test_vector_env_exposes_one_generator_and_seed_per_sub_env():
    vector = gym.make_vec("bpl/CopyRepeat-v0", num_envs=3)
    vector.reset(seed=7)
    assert vector.np_random_seed == (7, 8, 9)
    for i, generator in enumerate(vector.np_random):
        reference = np.random.default_rng(7 + i)
        reference.random((1, 8))  # the pattern reset drew
        assert generator.bit_generator.state == reference.bit_generator.state
    unseeded = gym.make_vec("bpl/CopyRepeat-v0", num_envs=2)
    seeds = unseeded.np_random_seed
    assert len(seeds) == 2 and all(isinstance(s, int) and s >= 0 for s in seeds)
    assert unseeded.np_random_seed == seeds


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda env: env.reset(seed=[1, 2]), ValueError, r"num_envs=3 entries, got 2"),
        (lambda env: env.reset(seed=1.5), TypeError, r"seed must be None, an int or a list"),
        (
            lambda env: env.reset(options={"reset_mask": np.array([True, False, True])}),
            ValueError,
            r"reset_mask.*partial reset.*not supported",
        ),
        (lambda env: env.reset(options={"bits": 3}), ValueError, r"unknown reset option"),
        (lambda env: env.reset(options=["repeats"]), TypeError, r"options must be a dict"),
    ],
)
def test_bad_vector_reset_arguments_are_rejected(call, error, message):
    with pytest.raises(error, match=message):
        call(CopyRepeatVectorEnv(3))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_envs": 0}, ValueError, r"num_envs must be an int >= 1, got 0"),
        ({"num_envs": 2.0}, TypeError, r"num_envs must be an int >= 1, got 2.0"),
        (
            {"num_envs": 2, "autoreset_mode": "Sometimes"},
            ValueError,
            r"autoreset_mode must be one of \['NextStep', 'SameStep', 'Disabled'\]",
        ),
        ({"num_envs": 2, "render_mode": "human"}, ValueError, r"render_mode must be None"),
    ],
)
def test_bad_vector_constructor_arguments_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        CopyRepeatVectorEnv(**kwargs)


def test_render_without_a_render_mode_warns_like_gymnasium():
    env = LineDrawEnv()
    env.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert env.render() is None
    assert "render_mode='ansi' or 'rgb_array'" in str(caught[0].message)


def test_returned_arrays_are_fresh_copies():
    vector = gym.make_vec("bpl/CopyRepeat-v0", num_envs=2, pattern_length=2)
    first, _ = vector.reset(seed=0)
    first[:] = 5.0
    again, _ = vector.reset(seed=0)
    assert again.max() <= 1.0
    _, _, _, _, info = vector.step(np.zeros((2, 9), np.float32))
    info["target"][:] = 9.0
    observations, *_ = vector.step(np.zeros((2, 9), np.float32))
    assert observations.max() <= 1.0
