"""Mackey-Glass: the integrator against closed forms and its order, the attractor, and the env.

The generic API (checkers, vector env = SyncVectorEnv, seeding) is in test_env_api.py.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
from scipy.integrate import quad

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.mackey_glass import (
    MACKEY_GLASS_SERIES_LENGTH,
    mackey_glass,
    mackey_glass_series,
)

BETA, GAMMA, EXPONENT, TAU, X0 = 0.2, 0.1, 10.0, 17.0, 1.2


def first_interval(t):
    """On [0, tau] the delayed value is the history x0: dx/dt = c - gamma x, solved exactly."""
    c = BETA * X0 / (1 + X0**EXPONENT)
    return c / GAMMA + (X0 - c / GAMMA) * np.exp(-GAMMA * t)


def second_interval(t):
    """On [tau, 2 tau] the delayed value is first_interval(s - tau): variation of constants,
    x(t) = e^{-gamma (t - tau)} x(tau) + int_tau^t e^{-gamma (t - s)} f(x(s - tau)) ds, by
    scipy's adaptive quadrature."""

    def forcing(s):
        delayed = first_interval(s - TAU)
        return math.exp(-GAMMA * (t - s)) * BETA * delayed / (1 + delayed**EXPONENT)

    integral = quad(forcing, TAU, t, epsabs=1e-14, epsrel=1e-13)[0]
    return math.exp(-GAMMA * (t - TAU)) * first_interval(TAU) + integral


def test_rk4_matches_the_exact_solution_on_the_first_two_delay_intervals():
    xs = mackey_glass(341, dt=0.1, sample_step=0.1)  # t = 0, 0.1, ..., 34
    t = np.arange(341) * 0.1
    np.testing.assert_allclose(xs[:171], first_interval(t[:171]), rtol=0, atol=1e-10)
    # the second interval reads the delayed value between grid points (the Hermite midpoint)
    exact = np.array([second_interval(s) for s in t[170:]])
    np.testing.assert_allclose(xs[170:], exact, rtol=0, atol=1e-9)


def test_the_integrator_converges_with_fourth_order():
    reference = mackey_glass(201, dt=0.025)  # t = 0 .. 200, through the chaotic transient
    errors = [np.abs(mackey_glass(201, dt=dt) - reference).max() for dt in (0.2, 0.1)]
    assert 12 < errors[0] / errors[1] < 20  # 2^4 = 16
    assert errors[1] < 1e-8


def test_the_series_is_on_the_known_attractor():
    """tau = 17: the attractor spans about [0.42, 1.32] (Mackey & Glass 1977; Farmer 1982);
    tau = 30 reaches further, about [0.2, 1.4]."""
    series = mackey_glass_series(17)
    assert series.shape == (MACKEY_GLASS_SERIES_LENGTH,) and not series.flags.writeable
    assert 0.40 < series.min() < 0.45 and 1.30 < series.max() < 1.34
    assert abs(series.mean() - 0.93) < 0.02
    longer_delay = mackey_glass_series(30)
    assert 0.15 < longer_delay.min() < 0.25 and 1.35 < longer_delay.max() < 1.45


def test_tau_17_is_chaotic_nearby_histories_separate_and_tau_5_is_not():
    near = dict(n_samples=4001)
    a, b = mackey_glass(x0=1.2, **near), mackey_glass(x0=1.2 + 1e-9, **near)
    assert np.abs(a[:100] - b[:100]).max() < 1e-7
    assert np.abs(a[-500:] - b[-500:]).max() > 0.1
    a, b = mackey_glass(x0=1.2, tau=5, **near), mackey_glass(x0=1.2 + 1e-9, tau=5, **near)
    assert np.abs(a[-500:] - b[-500:]).max() < 1e-8  # a stable cycle forgets the difference


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dt": 0.3}, ValueError, "dt=0.3 must divide tau=17.0"),
        ({"tau": -1.0}, ValueError, "tau must be a finite number > 0, got -1.0"),
        ({"x0": "1"}, TypeError, "x0 must be a finite number > 0, got '1'"),
        ({"washout": -1}, ValueError, "washout must be a finite number >= 0, got -1"),
    ],
)
def test_the_integrator_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mackey_glass(10, **kwargs)


def test_each_token_is_the_previous_target_and_every_step_is_scored():
    env = gym.make("bpl/MackeyGlass-v0", sequence_length=20)
    observation, _ = env.reset(seed=0)
    series = mackey_glass_series(17)[:8000].astype(np.float32)
    start = int(np.flatnonzero(series == observation[0])[0])
    for t in range(20):
        prediction = np.array([0.9], np.float32)
        observation, reward, terminated, _, info = env.step(prediction)
        assert info["scored"] and info["target"][0] == series[start + t + 1]
        expected = (float(prediction[0]) - float(series[start + t + 1])) ** 2
        assert math.isclose(reward, -expected, rel_tol=1e-12)
        if not terminated:
            assert observation[0] == series[start + t + 1]
    assert terminated


def test_observation_noise_has_the_given_std_and_leaves_the_targets_clean():
    env = gym.make("bpl/MackeyGlass-v0", sequence_length=400, noise_std=0.1)
    noisy_inputs, targets, _ = env.unwrapped.windows()  # noise from default_rng(0)
    windows = gym.make("bpl/MackeyGlass-v0", sequence_length=400).unwrapped.windows()
    np.testing.assert_array_equal(targets, windows[1])
    noise = (noisy_inputs - windows[0]).astype(np.float64).ravel()
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    assert np.abs(noise).max() <= 0.4 + 1e-6  # clipped at 4 standard deviations
    np.testing.assert_allclose(env.observation_space.low, [-0.4])
    np.testing.assert_allclose(env.observation_space.high, [1.9])


def test_the_splits_are_the_first_80_and_last_20_percent_and_windows_cut_them_in_order():
    series = mackey_glass_series(17)
    for split, part in (("train", series[:8000]), ("test", series[8000:])):
        env = gym.make("bpl/MackeyGlass-v0", sequence_length=30, split=split)
        inputs, targets, scored = env.unwrapped.windows()
        count = (len(part) - 1) // 30
        assert inputs.shape == targets.shape == (count, 30, 1) and scored.all()
        np.testing.assert_array_equal(inputs.ravel(), part[: count * 30].astype(np.float32))
        np.testing.assert_array_equal(targets.ravel(), part[1 : count * 30 + 1].astype(np.float32))


def test_reference_levels_stated_in_the_docstring():
    inputs, targets, _ = gym.make("bpl/MackeyGlass-v0", split="test").unwrapped.windows()
    targets = targets.astype(np.float64)
    assert targets.var() == pytest.approx(0.051, abs=0.002)
    assert np.mean((targets - inputs) ** 2) == pytest.approx(0.0011, abs=0.0001)


def test_a_stream_continues_the_series_and_wraps_to_the_start_of_the_split():
    env = gym.make("bpl/MackeyGlass-v0", sequence_length=600, split="test", stream=True)
    observation, _ = env.reset(seed=1)
    part = mackey_glass_series(17)[8000:].astype(np.float32)
    start = int(np.flatnonzero(part == observation[0])[0])
    boundaries, wrapped, t = 0, False, 0
    for _ in range(4 * 600):
        observation, _, terminated, _, info = env.step(np.zeros(1, np.float32))
        assert not terminated
        t += 1
        if info["sequence_end"]:
            boundaries, t = boundaries + 1, 0
            start += 600
            if start + 601 > len(part):
                start, wrapped = 0, True
        assert observation[0] == part[start + t]
    assert wrapped  # 2,000 test samples hold three windows of 601
    assert boundaries == 4


def test_render_shows_the_latest_steps():
    env = gym.make("bpl/MackeyGlass-v0", sequence_length=30, render_mode="ansi")
    env.reset(seed=0)
    for _ in range(15):
        _, _, _, _, info = env.step(np.array([0.5], np.float32))
    text = env.render()
    assert "15 of 30 tokens answered" in text and f"{info['target'][0]:.4f}   0.5000" in text


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tau": 0}, ValueError, "tau must be an int >= 1, got 0"),
        ({"tau": 17.0}, TypeError, "tau must be an int"),
        ({"noise_std": -0.1}, ValueError, "noise_std must be a finite number >= 0, got -0.1"),
        ({"noise_std": None}, TypeError, "noise_std must be a finite number >= 0, got None"),
        ({"split": "valid"}, ValueError, "split must be 'train' or 'test'"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be a number in \(0, 1\)"),
        ({"sequence_length": 2000, "split": "test"}, ValueError, "the test split holds 2000"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make("bpl/MackeyGlass-v0", **kwargs)
    with pytest.raises(error, match=match):
        gym.make_vec("bpl/MackeyGlass-v0", num_envs=2, **kwargs)
