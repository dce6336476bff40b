"""NativeVecEnv against SB3's DummyVecEnv of single envs, step by step, and SB3 algorithms on it.

DummyVecEnv is what ``make_vec_env`` builds and what SB3's algorithms are written against, so
it is the reference: for the same seeds and actions both must return the same observations,
rewards, dones and info dicts (with ``terminal_observation`` and ``TimeLimit.truncated``), and
the same ``reset_infos``.
"""

import pathlib
import runpy
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.sb3 import NativeVecEnv, make_native_vec_env, split_infos
from bpl_envs.task_spec import TaskSpec

CONFIGS = [
    ("bpl/CopyRepeat-v0", {"pattern_length": 2, "repeats": 2, "bits": 3}),
    ("bpl/LineDraw-v0", {"sequence_length": 4, "end_only": False}),
    ("bpl/SequentialDigits-v0", {}),
    ("bpl/RandomWalk-v0", {"n_states": 5}),  # sub-envs end at different steps
]


def assert_same(a, b, where):
    """Equal values of the same type (numpy arrays: same dtype and shape)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray | np.generic):
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def actions_for(vec_env, rng, steps):
    space = vec_env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return np.zeros((steps, vec_env.num_envs), dtype=np.int64)
    shape = (steps, vec_env.num_envs, *space.shape)
    return (rng.standard_normal(shape) * 2).astype(np.float32)


def drive(vec_env, seed, steps, action_seed=0):
    """Seed, reset, step with random actions; record every output and ``reset_infos``."""
    vec_env.seed(seed)
    record = [vec_env.reset(), list(vec_env.reset_infos)]
    for actions in actions_for(vec_env, np.random.default_rng(action_seed), steps):
        record.append(list(vec_env.step(actions)))
        record.append(list(vec_env.reset_infos))
    return record


@pytest.mark.parametrize(
    "mode", [AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED], ids=lambda m: m.value
)
@pytest.mark.parametrize("env_id, kwargs", CONFIGS, ids=lambda v: str(v))
def test_steps_exactly_like_dummy_vec_env_of_single_envs(env_id, kwargs, mode):
    num_envs = 3
    native = NativeVecEnv(gym.make_vec(env_id, num_envs=num_envs, autoreset_mode=mode, **kwargs))
    dummy = DummyVecEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)])
    assert native.observation_space == dummy.observation_space
    assert native.action_space == dummy.action_space
    native_record, dummy_record = drive(native, 4, 40), drive(dummy, 4, 40)
    assert_same(native_record, dummy_record, "stream")
    steps = native_record[2::2]
    ended = sum(int(done.sum()) for _, _, done, _ in steps)
    assert ended >= 6  # several episodes ended: the terminal observations were compared
    assert all(
        "terminal_observation" in info
        for _, _, done, infos in steps
        for info, d in zip(infos, done, strict=True)
        if d
    )


def test_any_gymnasium_vector_env_with_partial_resets_works():
    """SyncVectorEnv of single walks: sub-envs end at different steps and are reset alone."""
    sync = SyncVectorEnv([lambda: gym.make("bpl/RandomWalk-v0", n_states=3) for _ in range(4)])
    dummy = DummyVecEnv([lambda: gym.make("bpl/RandomWalk-v0", n_states=3) for _ in range(4)])
    assert_same(drive(NativeVecEnv(sync), 9, 30), drive(dummy, 9, 30), "stream")


def test_seeds_and_options_apply_at_the_next_reset_only():
    native = NativeVecEnv(gym.make_vec("bpl/CopyRepeat-v0", num_envs=2))
    assert native.seed(7) == [7, 8]
    native.set_options({"pattern_length": 4})
    first = native.reset()
    assert native.get_attr("task")[0].sequence_length == (1 + 1) * 4 + 3
    assert native.vector_env.np_random_seed == (7, 8)
    single = gym.make("bpl/CopyRepeat-v0", pattern_length=4)
    np.testing.assert_array_equal(first[1], single.reset(seed=8)[0])
    native.reset()  # no seed, no options: the generators and the lengths carry on
    assert native.vector_env.np_random_seed == (7, 8)
    assert native.get_attr("task")[0].sequence_length == 11
    native.set_options([{"repeats": 2}, {"repeats": 3}])
    with pytest.raises(ValueError, match="the same options"):
        native.reset()


def test_attribute_and_method_forwarding():
    walks = NativeVecEnv(gym.make_vec("bpl/RandomWalk-v0", num_envs=3, n_states=5))
    values = np.linspace(-1, 1, 7)
    expected = np.sqrt(np.mean((values[1:-1] - np.linspace(-1, 1, 7)[1:-1]) ** 2))
    assert walks.env_method("rms_error", values) == [pytest.approx(expected)] * 3
    assert walks.get_attr("n_states", indices=[0, 2]) == [5, 5]
    assert walks.get_attr("render_mode") == [None] * 3
    assert walks.has_attr("true_values") and not walks.has_attr("no_such_attribute")
    assert walks.env_is_wrapped(Monitor) == [False] * 3
    walks.set_attr("n_states", 5)
    with pytest.raises(ValueError, match=r"indices must be None or all of range\(3\), got \[1\]"):
        walks.set_attr("n_states", 5, indices=[1])
    with pytest.raises(ValueError, match="env_method acts on every sub-env"):
        walks.env_method("rms_error", values, indices=0)
    copy_repeat = NativeVecEnv(gym.make_vec("bpl/CopyRepeat-v0", num_envs=2))
    assert copy_repeat.get_attr("task") == [TaskSpec(10, 9, "bce", "window", 5)] * 2


def test_render_tiles_the_images_dummy_vec_env_tiles():
    kwargs = {"render_mode": "rgb_array", "pattern_length": 2}
    native = NativeVecEnv(gym.make_vec("bpl/CopyRepeat-v0", num_envs=3, **kwargs))
    dummy = DummyVecEnv([lambda: gym.make("bpl/CopyRepeat-v0", **kwargs) for _ in range(3)])
    for vec_env in (native, dummy):
        vec_env.seed(1)
        vec_env.reset()
        vec_env.step(np.ones((3, 9), np.float32))
    image = native.render()
    assert image.dtype == np.uint8 and image.ndim == 3
    np.testing.assert_array_equal(image, dummy.render())
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        NativeVecEnv(gym.make_vec("bpl/CopyRepeat-v0", num_envs=2)).get_images()


def test_split_infos_follows_the_masks_and_nested_dicts():
    infos = {
        "loss": np.array([0.5, 1.0, 2.0]),
        "_loss": np.array([True, False, True]),
        "target": np.arange(6.0).reshape(3, 2),
        "episode": {"r": np.array([1.0, 0.0, 3.0]), "_r": np.array([True, False, True])},
        "_episode": np.array([True, False, True]),
    }
    per_env = split_infos(infos, 3)
    assert per_env[0]["loss"] == 0.5 and "loss" not in per_env[1] and per_env[2]["loss"] == 2.0
    assert per_env[0]["episode"] == {"r": 1.0} and "episode" not in per_env[1]
    np.testing.assert_array_equal(per_env[1]["target"], [2.0, 3.0])
    assert split_infos({}, 2) == [{}, {}]


@pytest.mark.parametrize(
    "vector_env, error, message",
    [
        (
            lambda: gym.make("bpl/CopyRepeat-v0"),
            TypeError,
            "vector_env must be a gymnasium.vector.VectorEnv.*got OrderEnforcing",
        ),
        (
            lambda: DummyVecEnv([lambda: gym.make("bpl/CopyRepeat-v0")]),
            TypeError,
            "got DummyVecEnv",
        ),
        (
            lambda: gym.make_vec("bpl/CopyRepeat-v0", num_envs=2, autoreset_mode="SameStep"),
            ValueError,
            r"autoreset_mode 'SameStep'; NativeVecEnv needs one of \['NextStep', ",
        ),
    ],
)
def test_bad_input_is_refused(vector_env, error, message):
    with pytest.raises(error, match=message):
        NativeVecEnv(vector_env())


def test_step_wait_without_step_async_is_an_error():
    native = NativeVecEnv(gym.make_vec("bpl/CopyRepeat-v0", num_envs=2))
    native.reset()
    with pytest.raises(RuntimeError, match="call step_async"):
        native.step_wait()


# ------------------------------------------------------------------------ SB3 algorithms


@pytest.mark.parametrize(
    "algorithm, kwargs",
    [
        (PPO, {"policy": "MlpPolicy", "n_steps": 32, "batch_size": 64, "n_epochs": 2}),
        (A2C, {"policy": "MlpPolicy", "n_steps": 8}),
        (
            RecurrentPPO,
            {
                "policy": "MlpLstmPolicy",
                "n_steps": 32,
                "batch_size": 64,
                "n_epochs": 2,
                "policy_kwargs": {"lstm_hidden_size": 16},
            },
        ),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_sb3_algorithms_train_on_it(algorithm, kwargs):
    vec_env = make_native_vec_env("bpl/CopyRepeat-v0", n_envs=8, seed=0)
    assert isinstance(vec_env, VecMonitor) and isinstance(vec_env.venv, NativeVecEnv)
    model = algorithm(env=vec_env, seed=0, device="cpu", **kwargs)
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    episodes = list(model.ep_info_buffer)  # VecMonitor's episode returns: -summed loss
    assert len(episodes) >= 10 and all(e["l"] == 5 and e["r"] < 0 for e in episodes)
    observations = vec_env.reset()
    actions, _ = model.predict(observations)
    assert actions.shape == (8, 9)


def test_the_single_env_stays_valid_for_sb3s_checker_with_rgb_array():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("bpl/CopyRepeat-v0", render_mode="rgb_array").unwrapped)


def test_the_rl_memory_benchmark_example_runs_and_writes_its_figure(tmp_path, monkeypatch, capsys):
    example = pathlib.Path(__file__).parents[2] / "examples" / "rl_memory_benchmark.py"
    figure = tmp_path / "curves.png"
    arguments = [
        "--steps",
        "512",
        "--eval-every",
        "256",
        "--num-envs",
        "4",
        "--eval-sequences",
        "8",
        "--out",
        str(figure),
    ]
    monkeypatch.setattr(sys, "argv", [str(example), *arguments])
    runpy.run_path(str(example), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.count("held-out loss") == 4  # two evaluations per learner
    assert figure.read_bytes().startswith(b"\x89PNG")
