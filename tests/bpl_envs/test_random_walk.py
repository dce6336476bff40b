"""bpl/RandomWalk-v0: API conformance, vector == sync streams, statistics against theory."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.random_walk import RandomWalkEnv, RandomWalkVectorEnv, random_walk_true_values

ENV_ID = "bpl/RandomWalk-v0"


# --------------------------------------------------------------------------- API conformance


@pytest.mark.parametrize("n_states", [1, 5, 19])
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_gymnasium_and_sb3_check_env_pass_with_warnings_as_errors(n_states, render_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(ENV_ID, n_states=n_states, render_mode=render_mode).unwrapped
        gym_check_env(env)
        sb3_check_env(env, warn=True)


def test_spaces_start_and_registration():
    env = gym.make(ENV_ID)
    assert isinstance(env.unwrapped, RandomWalkEnv)
    assert env.observation_space == gym.spaces.Discrete(21)
    assert env.action_space == gym.spaces.Discrete(1)
    obs, info = env.reset(seed=0)
    assert obs == 10 and isinstance(obs, np.int64) and info == {}
    vec_env = gym.make_vec(ENV_ID, num_envs=3)
    assert isinstance(vec_env, RandomWalkVectorEnv)
    assert vec_env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = vec_env.reset(seed=0)
    np.testing.assert_array_equal(obs, [10, 10, 10])
    assert obs.dtype == np.int64


def test_episode_moves_by_one_and_rewards_only_at_the_ends():
    env = RandomWalkEnv(n_states=7)
    for seed in range(20):
        state, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            previous = state
            state, reward, terminated, truncated, info = env.step(0)
            assert abs(int(state) - int(previous)) == 1
            assert not truncated and info == {}
            assert terminated == (state in (0, 8))
            assert reward == {0: -1.0, 8: 1.0}.get(int(state), 0.0)


def test_ansi_render_marks_the_walker():
    env = RandomWalkEnv(n_states=5, render_mode="ansi")
    state, _ = env.reset(seed=3)
    assert env.render() == "-..@..+"
    for _ in range(2):
        state, *_ = env.step(0)
        drawing = env.render()
        assert len(drawing) == 7 and drawing.index("@") == state
    vec_env = RandomWalkVectorEnv(num_envs=2, n_states=5, render_mode="ansi")
    vec_env.reset(seed=0)
    assert vec_env.render() == ("-..@..+", "-..@..+")


def test_rgb_array_render_draws_the_ansi_cells_as_16_pixel_squares():
    colours = {"-": (178, 24, 43), "+": (33, 102, 172), ".": (235, 235, 235), "@": (8, 8, 8)}
    text_env = RandomWalkEnv(n_states=5, render_mode="ansi")
    image_env = RandomWalkEnv(n_states=5, render_mode="rgb_array")
    text_env.reset(seed=4)
    image_env.reset(seed=4)
    for _ in range(3):
        line, image = text_env.render(), image_env.render()
        assert image.shape == (16, 16 * 7, 3) and image.dtype == np.uint8
        for k, cell in enumerate(line):  # each square's inside has its cell's colour
            np.testing.assert_array_equal(
                image[:, 16 * k + 1 : 16 * (k + 1)], np.broadcast_to(colours[cell], (16, 15, 3))
            )
        np.testing.assert_array_equal(image[:, ::16], 255)
        text_env.step(0)
        image_env.step(0)
    vec_env = RandomWalkVectorEnv(num_envs=2, n_states=5, render_mode="rgb_array")
    vec_env.reset(seed=0)
    assert [i.shape for i in vec_env.render()] == [(16, 112, 3)] * 2


# --------------------------------------------------------------------------- true values


def test_true_values_satisfy_the_bellman_equation():
    for n_states in (1, 5, 19):
        v = random_walk_true_values(n_states)
        assert v.dtype == np.float64 and v.shape == (n_states + 2,)
        assert v[0] == 0.0 and v[-1] == 0.0
        reward_into = np.zeros(n_states + 2)
        reward_into[0], reward_into[-1] = -1.0, 1.0
        s = np.arange(1, n_states + 1)
        bellman = 0.5 * (reward_into[s - 1] + v[s - 1]) + 0.5 * (reward_into[s + 1] + v[s + 1])
        np.testing.assert_allclose(v[1:-1], bellman, rtol=0, atol=1e-15)
    np.testing.assert_allclose(random_walk_true_values(19)[1:-1], (np.arange(1, 20) - 10) / 10)


def test_rms_error_of_zero_values_is_sqrt_0_3_and_batches():
    env = RandomWalkEnv()
    assert env.rms_error(np.zeros(21)) == pytest.approx(np.sqrt(0.3), abs=1e-15)
    values = np.random.default_rng(0).normal(size=(4, 3, 21))
    expected = np.sqrt(np.mean((values[..., 1:-1] - (np.arange(1, 20) - 10) / 10) ** 2, -1))
    np.testing.assert_allclose(env.rms_error(values), expected, rtol=1e-14)
    assert RandomWalkVectorEnv(2).rms_error(np.zeros(21)) == env.rms_error(np.zeros(21))


# --------------------------------------------------------------------------- vector == sync


def _assert_same_info(vector_info, sync_info, where):
    assert vector_info.keys() == sync_info.keys(), where
    for key, expected in sync_info.items():
        got = vector_info[key]
        if isinstance(expected, dict):
            _assert_same_info(got, expected, f"{where}[{key!r}]")
            continue
        assert isinstance(got, np.ndarray) and got.dtype == expected.dtype, (where, key)
        assert got.shape == expected.shape, (where, key)
        for got_item, expected_item in zip(got.tolist(), expected.tolist(), strict=True):
            assert type(got_item) is type(expected_item) and got_item == expected_item, (where, key)


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_vector_env_stream_equals_sync_vector_env(mode):
    num_envs, n_states = 4, 5
    vector = gym.make_vec(
        ENV_ID,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        n_states=n_states,
        autoreset_mode=mode,
    )
    sync = gym.make_vec(
        ENV_ID,
        num_envs=num_envs,
        vectorization_mode="sync",
        n_states=n_states,
        vector_kwargs={"autoreset_mode": mode},
    )
    assert vector.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
    assert vector.observation_space == sync.observation_space
    assert vector.action_space == sync.action_space
    actions = np.zeros(num_envs, dtype=np.int64)
    n_terminations = 0
    for episode_seed in (11, None):  # a seeded reset, then an unseeded one that keeps the RNGs
        obs_v, info_v = vector.reset(seed=episode_seed)
        obs_s, info_s = sync.reset(seed=episode_seed)
        np.testing.assert_array_equal(obs_v, obs_s)
        _assert_same_info(info_v, info_s, "reset")
        for step in range(150):
            out_v, out_s = vector.step(actions), sync.step(actions)
            for name, got, expected in zip(
                ("obs", "reward", "terminated", "truncated"), out_v[:4], out_s[:4], strict=True
            ):
                assert got.dtype == expected.dtype, (step, name)
                np.testing.assert_array_equal(got, expected, err_msg=f"step {step} {name}")
            _assert_same_info(out_v[4], out_s[4], f"step {step}")
            n_terminations += int(out_s[2].sum())
            done = out_s[2] | out_s[3]
            if mode == AutoresetMode.DISABLED and done.any():
                obs_v, info_v = vector.reset(options={"reset_mask": done.copy()})
                obs_s, info_s = sync.reset(options={"reset_mask": done.copy()})
                np.testing.assert_array_equal(obs_v, obs_s)
                _assert_same_info(info_v, info_s, f"partial reset after step {step}")
        for rng_v, rng_s in zip(vector.np_random, sync.np_random, strict=True):
            assert rng_v.bit_generator.state == rng_s.bit_generator.state
    assert n_terminations > 20  # the comparison covered many episode ends


def test_vector_np_random_is_seeded_seed_plus_i():
    vector = RandomWalkVectorEnv(num_envs=3)
    vector.reset(seed=7)
    assert vector.np_random_seed == (7, 8, 9)
    for i, generator in enumerate(vector.np_random):
        expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(7 + i)))
        assert generator.bit_generator.state == expected.bit_generator.state


# --------------------------------------------------------------------------- reproducibility


def _single_trajectory(seed, n_episodes=5):
    env = RandomWalkEnv(n_states=7)
    states, _ = env.reset(seed=seed)
    trajectory = [int(states)]
    for _ in range(n_episodes):
        terminated = False
        while not terminated:
            state, reward, terminated, _, _ = env.step(0)
            trajectory += [int(state), reward]
        trajectory.append(int(env.reset()[0]))
    return trajectory


def test_seeded_runs_reproduce_and_different_seeds_differ():
    assert _single_trajectory(5) == _single_trajectory(5)
    assert _single_trajectory(5) != _single_trajectory(6)

    def vector_stream(seed):
        env = RandomWalkVectorEnv(num_envs=3, n_states=7)
        stream = [env.reset(seed=seed)[0]]
        stream += [np.concatenate(env.step(np.zeros(3, dtype=np.int64))[:3]) for _ in range(60)]
        return np.stack(stream[1:])

    np.testing.assert_array_equal(vector_stream(1), vector_stream(1))
    assert not np.array_equal(vector_stream(1), vector_stream(2))


# --------------------------------------------------------------------------- statistics


def test_termination_side_episode_length_and_visits_match_theory():
    """Symmetric walk on {0..N} from k: P(right) = k/N, E[length] = k(N-k), E[visits to j] =
    2 min(k,j)(N - max(k,j))/N (start counted). Tolerances: 4 standard errors."""
    n_states, num_envs, episodes_per_env = 5, 400, 10
    big_n, k = n_states + 1, (n_states + 1) // 2
    env = RandomWalkVectorEnv(num_envs, n_states=n_states, autoreset_mode=AutoresetMode.SAME_STEP)
    obs, _ = env.reset(seed=2024)
    visits = np.zeros((num_envs, n_states + 2))
    visits[np.arange(num_envs), obs] += 1
    lengths = np.zeros(num_envs)
    # The first episodes_per_env episodes of every sub-env (stopping at a total count instead
    # would over-sample short episodes).
    finished = [[] for _ in range(num_envs)]
    while min(len(episodes) for episodes in finished) < episodes_per_env:
        obs, reward, terminated, _, info = env.step(np.zeros(num_envs, dtype=np.int64))
        lengths += 1
        for i in np.flatnonzero(terminated):
            final_obs = info["final_obs"][i]
            assert final_obs in (0, big_n)
            assert reward[i] == (1.0 if final_obs == big_n else -1.0)
            finished[i].append((final_obs == big_n, lengths[i], visits[i].copy()))
            visits[i], lengths[i] = 0, 0
        visits[np.arange(num_envs), obs] += 1
    episodes = [episode for runs in finished for episode in runs[:episodes_per_env]]
    right_ends = np.array([right for right, _, _ in episodes], dtype=float)
    lengths = np.array([length for _, length, _ in episodes])
    visits = np.array([counts for _, _, counts in episodes])
    n = len(episodes)

    p_right = k / big_n
    assert abs(right_ends.mean() - p_right) < 4 * np.sqrt(p_right * (1 - p_right) / n)

    mean_length = k * (big_n - k)
    var_length = k * (big_n - k) * ((big_n - k) ** 2 + k**2 - 2) / 3
    assert abs(lengths.mean() - mean_length) < 4 * np.sqrt(var_length / n)

    j = np.arange(1, big_n)
    expected_visits = 2 * np.minimum(k, j) * (big_n - np.maximum(k, j)) / big_n
    standard_error = visits[:, 1:-1].std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(visits[:, 1:-1].mean(axis=0) - expected_visits) < 4 * standard_error)
    assert np.all(visits[:, [0, -1]] == 0)  # terminal observations are not visits


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("n_states", [0, 2, 18, -1])
def test_bad_n_states_value(n_states):
    with pytest.raises(ValueError, match="n_states"):
        RandomWalkEnv(n_states=n_states)
    with pytest.raises(ValueError, match="n_states"):
        RandomWalkVectorEnv(2, n_states=n_states)


@pytest.mark.parametrize("n_states", [19.0, True, "19"])
def test_bad_n_states_type(n_states):
    with pytest.raises(TypeError, match="n_states"):
        RandomWalkEnv(n_states=n_states)


def test_bad_arguments_are_rejected_with_their_names():
    with pytest.raises(ValueError, match="render_mode"):
        RandomWalkEnv(render_mode="human")
    with pytest.raises(ValueError, match="num_envs"):
        RandomWalkVectorEnv(0)
    with pytest.raises(TypeError, match="num_envs"):
        RandomWalkVectorEnv(2.0)
    with pytest.raises(ValueError, match="autoreset_mode"):
        RandomWalkVectorEnv(2, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="values must have shape"):
        RandomWalkEnv().rms_error(np.zeros(19))


def test_bad_single_env_calls():
    env = RandomWalkEnv(n_states=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for action in (1, -1, 0.0, "0"):
        with pytest.raises(ValueError, match="action"):
            env.step(action)
    env.step(0)  # with one state the first step ends the episode
    with pytest.raises(RuntimeError, match="terminated"):
        env.step(0)
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"start": 3})


def test_bad_vector_env_calls():
    env = RandomWalkVectorEnv(2, n_states=1, autoreset_mode=AutoresetMode.DISABLED)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="first reset"):
        env.reset(options={"reset_mask": np.array([True, False])})
    env.reset(seed=0)
    for actions in (np.zeros(3, dtype=np.int64), np.ones(2, dtype=np.int64), np.zeros(2) + 0.5):
        with pytest.raises(ValueError, match="actions"):
            env.step(actions)
    env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(RuntimeError, match="reset_mask"):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="reset_mask"):
        env.reset(options={"reset_mask": [True, False]})
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.zeros(2, dtype=np.bool_)})
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"start": 1})
