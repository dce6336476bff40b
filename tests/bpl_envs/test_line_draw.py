"""Line draw: the fixed cue, the targets on the line and the MSE, computed here independently."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.line_draw import LineDrawEnv


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    inputs, infos, rewards, terminated, t = [obs], [], [], False, 0
    while not terminated:
        obs, reward, terminated, _, info = env.step(actions[t])
        inputs.append(obs)
        infos.append(info)
        rewards.append(reward)
        t += 1
    return np.array(inputs[:-1]), infos, np.array(rewards)


@pytest.mark.parametrize(
    ("length", "cue_bits", "end_point", "end_only"),
    [(10, 10, (0.0, 1.0), True), (6, 4, (2.5, -0.75), False), (1, 3, (1.0, 2.0), True)],
)
def test_stream_matches_the_line_and_torch_mse(length, cue_bits, end_point, end_only):
    env = LineDrawEnv(
        sequence_length=length, cue_bits=cue_bits, end_point=end_point, end_only=end_only
    )
    actions = np.random.default_rng(0).normal(size=(length, 2)).astype(np.float32)
    inputs, infos, rewards = rollout(env, 0, actions)

    cue = np.random.default_rng(123).integers(0, 2, cue_bits)
    assert cue.any()  # the default cue_seed's first draw is not all zeros
    expected_inputs = np.zeros((length, cue_bits), np.float32)
    expected_inputs[0] = cue
    points = [
        [t / (length - 1) * end_point[0], t / (length - 1) * end_point[1]]
        if length > 1
        else list(end_point)
        for t in range(length)
    ]
    scored = [True] * length if not end_only else [t == length - 1 for t in range(length)]
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_allclose([i["target"] for i in infos], points, rtol=1e-7, atol=1e-7)
    np.testing.assert_array_equal(infos[-1]["target"], np.float32(end_point))
    assert [i["scored"] for i in infos] == scored
    mse = F.mse_loss(
        torch.tensor(actions, dtype=torch.float64),
        torch.tensor(np.array([i["target"] for i in infos]), dtype=torch.float64),
        reduction="none",
    ).mean(-1).numpy() * np.array(scored)
    np.testing.assert_allclose([i["loss"] for i in infos], mse, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rewards, -mse, rtol=1e-12, atol=0)
    assert env.task == bpl_envs.TaskSpec(cue_bits, 2, "mse", "last" if end_only else "all", length)


def test_cue_is_fixed_by_cue_seed_and_independent_of_the_env_seed():
    env = LineDrawEnv(cue_seed=9)
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=2)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, np.random.default_rng(9).integers(0, 2, 10))
    other, _ = LineDrawEnv(cue_seed=10).reset(seed=1)
    assert not np.array_equal(first, other)


def test_cue_is_never_all_zeros():
    """With one cue bit half of the seeds first draw a zero: the cue is redrawn until it is not."""
    first_draws = [np.random.default_rng(seed).integers(0, 2, 1)[0] for seed in range(40)]
    assert 0 in first_draws
    for seed in range(40):
        obs, _ = LineDrawEnv(cue_bits=1, cue_seed=seed).reset()
        assert obs.tolist() == [1.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sequence_length": 0}, ValueError, r"sequence_length must be an int >= 1, got 0"),
        ({"cue_bits": 2.5}, TypeError, r"cue_bits must be an int >= 1, got 2.5"),
        ({"end_point": (1.0,)}, TypeError, r"end_point must be a pair of floats \(x, y\)"),
        ({"end_point": (1.0, "a")}, TypeError, r"end_point must be a pair of floats"),
        ({"end_point": (0.0, np.inf)}, ValueError, r"end_point must be finite"),
        ({"end_only": 1}, TypeError, r"end_only must be a bool, got 1"),
        ({"cue_seed": -1}, ValueError, r"cue_seed must be an int >= 0, got -1"),
    ],
)
def test_invalid_arguments_are_rejected_with_the_argument_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        LineDrawEnv(**kwargs)
    with pytest.raises(error, match=message):
        gym.make_vec("bpl/LineDraw-v0", num_envs=2, **kwargs)


def test_no_reset_options_are_accepted():
    with pytest.raises(
        ValueError,
        match=r"unknown reset option\(s\) \['sequence_length'\]; "
        "this env takes none",
    ):
        LineDrawEnv().reset(options={"sequence_length": 3})


def test_ansi_render_shows_cue_targets_and_predictions():
    env = LineDrawEnv(sequence_length=3, cue_bits=4, cue_seed=0, render_mode="ansi")
    env.reset()
    cue = "".join(map(str, np.random.default_rng(0).integers(0, 2, 4)))
    env.step(np.array([0.25, -0.5], np.float32))
    text = env.render()
    assert text.splitlines()[:2] == [
        "LineDraw: T=3, end_point=(0.0, 1.0), scoring='last'; 1 of 3 tokens answered",
        f"cue (t=0): {cue}",
    ]
    assert "  0     (+0.000, +0.000)  (+0.250, -0.500)" in text
    assert "  1     (+0.000, +0.500)  -" in text
    last_row = text.splitlines()[-1].split()
    assert last_row == ["2", "(+0.000,", "+1.000)", "-", "yes"]  # only the last step is scored
    assert text.count("yes") == 1
