"""Stable-Baselines3's own callbacks run unchanged on our recurrent learners."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.monitor import Monitor

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents import BPLambda


def line_draw_loss_by_hand(learner):
    """-reward of one LineDraw sequence (deterministic task), from predict and the env's loss."""
    env = gym.make("bpl/LineDraw-v0")
    obs, _ = env.reset(seed=0)
    state, total, done = None, 0.0, False
    while not done:
        prediction, state = learner.predict(obs, state)
        obs, _, done, _, info = env.step(prediction)
        total += info["loss"] if info["scored"] else 0.0
    return total


def test_eval_and_checkpoint_callbacks_in_a_callback_list(tmp_path):
    learner = BPLambda(
        gym.make_vec("bpl/LineDraw-v0", num_envs=2),
        hidden_size=8,
        seed=0,
        lr_core=1e-2,
        lr_readout=1e-2,
    )
    eval_env = Monitor(gym.make("bpl/LineDraw-v0"))
    evaluation = EvalCallback(
        eval_env, n_eval_episodes=2, eval_freq=20, log_path=str(tmp_path / "eval"), warn=False
    )
    checkpoint = CheckpointCallback(save_freq=20, save_path=str(tmp_path / "ckpt"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Training and eval env are not of the same")
        learner.learn(total_timesteps=40 * 2, callback=CallbackList([evaluation, checkpoint]))

    results = np.load(tmp_path / "eval" / "evaluations.npz")
    assert list(results["timesteps"]) == [40, 80]
    assert evaluation.last_mean_reward == pytest.approx(-line_draw_loss_by_hand(learner), rel=1e-5)
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert saved == ["rl_model_40_steps.zip", "rl_model_80_steps.zip"]
    reloaded = BPLambda.load(tmp_path / "ckpt" / "rl_model_80_steps.zip")
    obs = np.ones(10, np.float32)
    np.testing.assert_array_equal(reloaded.predict(obs)[0], learner.predict(obs)[0])
