"""Stable-Baselines3's own callbacks and evaluate_policy run unchanged on our learners."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents import BPLambda, TDLambda


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


def random_walk_episodes(seed, n_episodes):
    """(returns, lengths) of the walk's first episodes from a seeded first reset, by hand."""
    env = gym.make("bpl/RandomWalk-v0")
    returns, lengths = [], []
    for episode in range(n_episodes):
        env.reset(seed=seed if episode == 0 else None)
        total, length, terminated = 0.0, 0, False
        while not terminated:
            _, reward, terminated, _, _ = env.step(0)
            total, length = total + reward, length + 1
        returns.append(total)
        lengths.append(length)
    return returns, lengths


def test_evaluate_policy_and_eval_callback_run_td_lambda_on_the_random_walk(tmp_path):
    td = TDLambda(gym.make("bpl/RandomWalk-v0"), lam=0.8, alpha=0.1, seed=0)
    eval_env = DummyVecEnv([lambda: Monitor(gym.make("bpl/RandomWalk-v0"))])
    eval_env.seed(7)
    returns, lengths = evaluate_policy(td, eval_env, n_eval_episodes=4, return_episode_rewards=True)
    assert (returns, lengths) == random_walk_episodes(7, 4)

    evaluation = EvalCallback(
        Monitor(gym.make("bpl/RandomWalk-v0")),
        n_eval_episodes=3,
        eval_freq=50,
        log_path=str(tmp_path),
        warn=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Training and eval env are not of the same")
        td.learn(total_timesteps=100, callback=evaluation)  # whole episodes: may pass 100
    results = np.load(tmp_path / "evaluations.npz")
    evaluations = td.num_timesteps // 50
    assert list(results["timesteps"]) == [50 * (k + 1) for k in range(evaluations)]
    assert results["results"].shape == (evaluations, 3)
    assert set(np.unique(results["results"])) <= {-1, 1}  # each return is -1 or +1
