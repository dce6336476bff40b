"""The shared learner plumbing: budgets, callbacks, logger, checkpoints with env random state."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from agents.base import BaseLearner


class CoinFlips(gym.Env):
    """Episodes of exactly 3 steps; the observation is a coin flip from the env's generator."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):  # noqa: ARG002 (Gymnasium signature)
        super().reset(seed=seed)
        self.t = 0
        return int(self.np_random.integers(2)), {}

    def step(self, action):  # noqa: ARG002 (a single-action env: the action changes nothing)
        self.t += 1
        return int(self.np_random.integers(2)), 0.0, self.t == 3, False, {}


class HeadsCounter(BaseLearner):
    """Counts heads; its 'learned state' is the count, so checkpoints can be checked exactly."""

    def __init__(self, env, *, seed=None, verbose=0, scale=1.0):
        super().__init__(env, seed=seed, verbose=verbose)
        self.scale = scale
        self.heads = torch.zeros(())

    def _run_episode(self):
        obs, _ = self.env.reset(seed=self._next_seed())
        while True:
            self.heads += self.scale * obs
            obs, _, terminated, _, _ = self.env.step(0)
            if not self._on_env_step(1, episode_done=terminated):
                return False
            if terminated:
                self.logger.record("train/heads", float(self.heads))
                return True

    def _hyperparameters(self):
        return {"seed": self.seed, "verbose": self.verbose, "scale": self.scale}

    def _get_state(self):
        return {"heads": self.heads.clone()}

    def _set_state(self, state):
        self.heads = state["heads"].clone()


class Recorder(BaseCallback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.events, self.stop_after = [], stop_after

    def _on_training_start(self):
        self.events.append("start")

    def _on_rollout_end(self):
        self.events.append("episode")

    def _on_step(self):
        return self.stop_after is None or self.n_calls < self.stop_after

    def _on_training_end(self):
        self.events.append("end")


def test_timestep_budget_completes_the_last_episode_and_counts_steps():
    learner = HeadsCounter(CoinFlips(), seed=0).learn(total_timesteps=7)
    assert learner.num_timesteps == 9 and learner.num_episodes == 3


def test_episode_budget_and_callback_events():
    recorder = Recorder()
    learner = HeadsCounter(CoinFlips(), seed=0).learn(episodes=2, callback=recorder)
    assert recorder.events == ["start", "episode", "episode", "end"]
    assert recorder.n_calls == learner.num_timesteps == 6
    assert recorder.model is learner


def test_callback_returning_false_stops_learning():
    learner = HeadsCounter(CoinFlips(), seed=0).learn(episodes=10, callback=[Recorder(4)])
    assert learner.num_timesteps == 4 and learner.num_episodes == 1  # completed episodes only


def test_seeded_learning_is_reproducible_and_continues_like_one_run(tmp_path):
    straight = HeadsCounter(CoinFlips(), seed=3).learn(episodes=8)

    first = HeadsCounter(CoinFlips(), seed=3).learn(episodes=5)
    first.save(tmp_path / "half")
    resumed = HeadsCounter.load(tmp_path / "half", env=CoinFlips())
    resumed.learn(episodes=3, reset_num_timesteps=False)

    assert resumed.num_episodes == 8 and resumed.num_timesteps == straight.num_timesteps
    assert float(resumed.heads) == float(straight.heads)
    assert float(HeadsCounter(CoinFlips(), seed=4).learn(episodes=8).heads) != float(straight.heads)


def test_sb3_checkpoint_callback_saves_loadable_checkpoints(tmp_path):
    callback = CheckpointCallback(save_freq=3, save_path=str(tmp_path), name_prefix="coin")
    learner = HeadsCounter(CoinFlips(), seed=1, scale=2.0).learn(episodes=2, callback=callback)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["coin_3_steps.zip", "coin_6_steps.zip"]
    reloaded = HeadsCounter.load(tmp_path / "coin_6_steps.zip")
    assert reloaded.scale == 2.0 and float(reloaded.heads) == float(learner.heads)
    assert reloaded.get_env() is None
    with pytest.raises(RuntimeError, match="no env"):
        reloaded.learn(episodes=1)


def test_logger_records_reach_the_output(capsys):
    HeadsCounter(CoinFlips(), seed=0, verbose=1).learn(episodes=1)
    out = capsys.readouterr().out
    assert "train/" in out and "heads" in out and "total_timesteps" in out


def test_loading_the_wrong_class_is_refused(tmp_path):
    HeadsCounter(CoinFlips(), seed=0).save(tmp_path / "c.pt")

    class Other(HeadsCounter):
        pass

    with pytest.raises(ValueError, match="'HeadsCounter' checkpoint, not a Other one"):
        Other.load(tmp_path / "c.pt")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one budget"),
        ({"total_timesteps": 3, "episodes": 1}, "exactly one budget"),
        ({"total_timesteps": -1}, "total_timesteps must be an int >= 0, got -1"),
        ({"episodes": 1.5}, "episodes must be an int >= 0, got 1.5"),
        ({"episodes": 1, "log_interval": -2}, "log_interval"),
        ({"episodes": 1, "callback": print}, "callback must be an SB3 BaseCallback"),
    ],
)
def test_bad_learn_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        HeadsCounter(CoinFlips()).learn(**kwargs)


def test_learn_budget_errors_split_wrong_types_from_wrong_values():
    with pytest.raises(TypeError, match=r"episodes must be an int >= 0, got 1.5 \(float\)"):
        HeadsCounter(CoinFlips()).learn(episodes=1.5)
    with pytest.raises(TypeError, match="total_timesteps must be an int >= 0, got True"):
        HeadsCounter(CoinFlips()).learn(total_timesteps=True)
    with pytest.raises(ValueError, match="total_timesteps must be an int >= 0, got -1"):
        HeadsCounter(CoinFlips()).learn(total_timesteps=-1)


def test_seed_is_checked_and_numpy_integers_are_accepted():
    with pytest.raises(TypeError, match="seed must be None or an int, got '0'"):
        HeadsCounter(CoinFlips(), seed="0")
    with pytest.raises(TypeError, match="seed must be None or an int, got True"):
        HeadsCounter(CoinFlips(), seed=True)
    learner = HeadsCounter(CoinFlips(), seed=np.int64(3))
    assert learner.seed == 3 and type(learner.seed) is int


def test_load_overrides_replace_saved_hyperparameters_and_unknown_ones_are_refused(tmp_path):
    HeadsCounter(CoinFlips(), seed=0, scale=2.0).save(tmp_path / "c")
    assert HeadsCounter.load(tmp_path / "c", scale=5.0).scale == 5.0
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['scal'\].*'scale'"):
        HeadsCounter.load(tmp_path / "c", scal=5.0)
