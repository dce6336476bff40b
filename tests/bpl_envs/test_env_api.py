"""Every sequence env against Gymnasium's and SB3's checkers and against SyncVectorEnv of singles.

The native vector env must stream exactly what ``SyncVectorEnv([gym.make(id, **kw)] * B)``
streams: observations, rewards, terminations, truncations and infos (keys, masks, dtypes,
``final_obs``/``final_info``), in every autoreset mode, over several sequences.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.copy_repeat import CopyRepeatCurriculum

CONFIGS = [
    ("bpl/CopyRepeat-v0", {}),
    ("bpl/CopyRepeat-v0", {"pattern_length": 3, "repeats": 2, "bits": 4, "max_repeats": 5}),
    ("bpl/LineDraw-v0", {}),
    (
        "bpl/LineDraw-v0",
        {"sequence_length": 4, "cue_bits": 3, "end_point": (0.5, -2.0), "end_only": False},
    ),
    ("bpl/LineDraw-v0", {"sequence_length": 1}),
    ("bpl/SequentialDigits-v0", {}),
    ("bpl/SequentialDigits-v0", {"split": "test", "test_fraction": 0.3, "split_seed": 5}),
    ("bpl/SequentialMNIST-v0", {}),
    (
        "bpl/SequentialMNIST-v0",
        {"split": "test", "pixel_by_pixel": True, "permute": True, "permutation_seed": 3},
    ),
    ("bpl/AddingProblem-v0", {}),
    ("bpl/AddingProblem-v0", {"sequence_length": 7}),
    ("bpl/CharLM-v0", {}),
    ("bpl/CharLM-v0", {"sequence_length": 8, "split": "test", "min_count": 50}),
    ("bpl/MackeyGlass-v0", {}),
    (
        "bpl/MackeyGlass-v0",
        {"sequence_length": 5, "tau": 30, "noise_std": 0.05, "split": "test"},
    ),
]
RANDOM_TASKS = [config for config in CONFIGS if "LineDraw" not in config[0]]
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


def config_id(config):
    env_id, kwargs = config
    return env_id.removeprefix("bpl/") + "".join(f"-{k}={v}" for k, v in kwargs.items())


def assert_identical(a, b, where="value"):
    """Same structure, key order, types, dtypes, shapes and exactly equal numbers."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        )
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert_identical(x, y, f"{where}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def drive(vec_env, mode, seed, num_sequences, action_seed):
    """The calls a learner makes, recorded: seeded reset, steps with random logits, and at each
    sequence end either an autoreset (continue stepping) or a manual reset(), alternately."""
    rng = np.random.default_rng(action_seed)
    action_shape = vec_env.action_space.shape
    record = [vec_env.reset(seed=seed)]
    ended = 0
    while ended < num_sequences:
        actions = (rng.standard_normal(action_shape) * 3).astype(np.float32)
        result = vec_env.step(actions)
        record.append(result)
        if result[2].all():
            ended += 1
            if mode == AutoresetMode.DISABLED or ended % 2 == 0:
                record.append(vec_env.reset())
            elif mode == AutoresetMode.NEXT_STEP:
                record.append(vec_env.step(actions))  # the autoreset step
        else:
            assert not result[2].any(), "sub-envs must terminate together"
    record.append(tuple(g.bit_generator.state for g in vec_env.np_random))
    return record


@pytest.mark.parametrize(
    "config",
    [*CONFIGS, ("bpl/CopyRepeat-v0", {"curriculum": CopyRepeatCurriculum(threshold_bits=0.5)})],
    ids=config_id,
)
def test_single_env_passes_gymnasium_and_sb3_checkers(config):
    env_id, kwargs = config
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, **kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_vector_env_streams_exactly_what_sync_vector_env_of_singles_streams(config, mode):
    env_id, kwargs = config
    num_envs = 3
    native = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode=mode, **kwargs)
    sync = SyncVectorEnv(
        [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)], autoreset_mode=mode
    )
    assert type(native).__name__.endswith("VectorEnv") and not isinstance(native, SyncVectorEnv)
    assert native.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
    assert native.single_observation_space == sync.single_observation_space
    assert native.single_action_space == sync.single_action_space
    assert native.observation_space == sync.observation_space
    assert native.action_space == sync.action_space
    num_sequences = 2 if native.task.sequence_length > 100 else 5
    assert_identical(
        drive(native, mode, seed=11, num_sequences=num_sequences, action_seed=0),
        drive(sync, mode, seed=11, num_sequences=num_sequences, action_seed=0),
        "stream",
    )
    assert native.np_random_seed == sync.np_random_seed == (11, 12, 13)


@pytest.mark.parametrize("config", CONFIGS[:1] + CONFIGS[5:6], ids=config_id)
def test_a_list_of_seeds_with_none_seeds_like_sync_vector_env(config):
    env_id, kwargs = config
    native = gym.make_vec(env_id, num_envs=3, **kwargs)
    sync = SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(3)])
    for env in (native, sync):
        env.reset(seed=[5, 6, 7])
    assert_identical(
        drive(native, AutoresetMode.NEXT_STEP, [40, None, 2], 3, action_seed=1),
        drive(sync, AutoresetMode.NEXT_STEP, [40, None, 2], 3, action_seed=1),
    )
    assert native.np_random_seed == sync.np_random_seed == (40, 6, 2)


@pytest.mark.parametrize("config", RANDOM_TASKS, ids=config_id)
def test_seeded_runs_repeat_and_different_seeds_differ(config):
    env_id, kwargs = config
    env = gym.make_vec(env_id, num_envs=2, **kwargs)
    first = drive(env, AutoresetMode.NEXT_STEP, seed=3, num_sequences=2, action_seed=0)
    again = drive(env, AutoresetMode.NEXT_STEP, seed=3, num_sequences=2, action_seed=0)
    other = drive(env, AutoresetMode.NEXT_STEP, seed=4, num_sequences=2, action_seed=0)
    assert_identical(first, again)
    observations = [np.stack([r[0] for r in run[:-1]]) for run in (first, other)]
    assert observations[0].shape != observations[1].shape or not np.array_equal(*observations)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
@pytest.mark.parametrize("config", RANDOM_TASKS[:1] + RANDOM_TASKS[2:3], ids=config_id)
def test_generator_states_saved_after_a_batch_determine_the_next_batch(config, mode):
    """The learner loop: reset(seed), step until all terminate, checkpoint the generators,
    reset() for the next batch; restoring the checkpoint gives that batch again."""
    env_id, kwargs = config
    env = gym.make_vec(env_id, num_envs=4, autoreset_mode=mode, **kwargs)
    env.reset(seed=0)
    actions = np.zeros(env.action_space.shape, np.float32)
    states_during = [g.bit_generator.state for g in env.np_random]
    while True:
        terminated = env.step(actions)[2]
        if terminated.all():
            break
        assert [g.bit_generator.state for g in env.np_random] == states_during
    saved = [g.bit_generator.state for g in env.np_random]
    if mode != AutoresetMode.SAME_STEP:  # NEXT_STEP and DISABLED have drawn nothing yet
        assert saved == states_during
    next_batch, _ = env.reset()
    for generator, state in zip(env.np_random, saved, strict=True):
        generator.bit_generator.state = state
    np.testing.assert_array_equal(env.reset()[0], next_batch)


@pytest.mark.parametrize("config", CONFIGS[:1] + CONFIGS[2:3] + CONFIGS[5:6], ids=config_id)
def test_task_spec_is_the_same_for_single_vector_and_through_wrappers(config):
    env_id, kwargs = config
    single = gym.make(env_id, **kwargs)
    vector = gym.make_vec(env_id, num_envs=2, **kwargs)
    single.reset(seed=0)
    vector.reset(seed=0)
    spec = single.get_wrapper_attr("task")
    assert spec == single.unwrapped.task == vector.task
    assert spec.input_size == single.observation_space.shape[0]
    assert spec.output_size == single.action_space.shape[0]


INDEPENDENT_STREAM_CONFIGS = [CONFIGS[1], CONFIGS[3], CONFIGS[6], CONFIGS[7], CONFIGS[10]]
"""Tasks whose stream chains independent sequences (each one what a reset would start)."""
SERIES_STREAM_CONFIGS = [CONFIGS[12], CONFIGS[14]]
"""Tasks that read one series (text, time series): the stream continues it (own tests)."""
STREAM_CONFIGS = INDEPENDENT_STREAM_CONFIGS + SERIES_STREAM_CONFIGS


def drive_stream(env, seed, num_steps, action_seed):
    """A seeded reset, then ``num_steps`` steps with random logits and no reset at all."""
    rng = np.random.default_rng(action_seed)
    record = [env.reset(seed=seed)]
    for _ in range(num_steps):
        actions = (rng.standard_normal(env.action_space.shape) * 3).astype(np.float32)
        record.append(env.step(actions))
    return record


@pytest.mark.parametrize("config", STREAM_CONFIGS, ids=config_id)
def test_stream_env_passes_gymnasium_and_sb3_checkers(config):
    env_id, kwargs = config
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, stream=True, **kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("config", STREAM_CONFIGS, ids=config_id)
def test_stream_vector_env_streams_exactly_what_sync_vector_env_of_stream_singles_streams(config):
    env_id, kwargs = config
    native = gym.make_vec(env_id, num_envs=3, stream=True, **kwargs)
    sync = SyncVectorEnv([lambda: gym.make(env_id, stream=True, **kwargs) for _ in range(3)])
    num_steps = 3 * native.task.sequence_length + 2
    native_record = drive_stream(native, seed=4, num_steps=num_steps, action_seed=1)
    assert_identical(native_record, drive_stream(sync, 4, num_steps, 1), "stream")
    terminated = np.array([step[2] for step in native_record[1:]])
    assert not terminated.any()


@pytest.mark.parametrize("config", INDEPENDENT_STREAM_CONFIGS, ids=config_id)
def test_stream_env_chains_the_sequences_an_unseeded_reset_would_start(config):
    """stream=True is the same sequence of sequences as reset() after each termination; only
    the boundary step differs: its observation is the next sequence's first token, not zeros."""
    env_id, kwargs = config
    stream = gym.make(env_id, stream=True, **kwargs)
    plain = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(0)
    stream_obs, _ = stream.reset(seed=9)
    plain_obs, _ = plain.reset(seed=9)
    boundaries = 0
    for _ in range(3 * stream.unwrapped.task.sequence_length):
        np.testing.assert_array_equal(stream_obs, plain_obs)
        action = rng.standard_normal(stream.action_space.shape).astype(np.float32)
        stream_obs, stream_reward, stream_terminated, _, stream_info = stream.step(action)
        plain_obs, plain_reward, plain_terminated, _, plain_info = plain.step(action)
        assert stream_reward == plain_reward
        assert_identical(stream_info, plain_info, "info")
        assert not stream_terminated and plain_terminated == stream_info["sequence_end"]
        if plain_terminated:
            boundaries += 1
            np.testing.assert_array_equal(plain_obs, np.zeros_like(plain_obs))
            plain_obs, _ = plain.reset()
    assert boundaries == 3


def test_stream_vector_env_follows_the_curriculum_between_sequences():
    curriculum = CopyRepeatCurriculum(threshold_bits=1e9)  # every batch advances
    env = gym.make_vec("bpl/CopyRepeat-v0", num_envs=2, stream=True, curriculum=curriculum)
    env.reset(seed=0)
    lengths, steps = [], 0
    while len(lengths) < 4:
        _, _, terminated, _, infos = env.step(np.zeros((2, 9), np.float32))
        steps += 1
        assert not terminated.any()
        if infos["sequence_end"].all():
            assert infos["curriculum_advanced"].all()
            lengths.append(steps)
            steps = 0
    assert lengths == [5, 7, 9, 12]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_stream_must_be_a_bool(value):
    with pytest.raises(TypeError, match="stream must be a bool"):
        gym.make("bpl/LineDraw-v0", stream=value)
    with pytest.raises(TypeError, match="stream must be a bool"):
        gym.make_vec("bpl/SequentialDigits-v0", num_envs=2, stream=value)
