"""SupervisedTaskWrapper on a small NeuroGym-style perceptual decision task written here.

NeuroGym (the best-known collection of supervised sequence tasks as envs) pins gymnasium 0.29,
so its conventions are reproduced: fixation / stimulus / decision periods, ``info["gt"]`` the
correct action of the step just taken, ``info["new_trial"]`` on a trial's last step, trials
following each other within one episode.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from agents import BPTT
from agents.experiments.run_logs import MetricHistory
from agents.registry import LEARNERS, get_learner
from agents.sequence_learner import SequenceLearner
from bpl_envs import SupervisedTaskWrapper, TaskSpec

FIXATION, STIMULUS, DECISION = 2, 4, 2
TRIAL = FIXATION + STIMULUS + DECISION


class PerceptualDecision(gym.Env):
    """Two noisy evidence channels; after the stimulus, choose the stronger one.

    Observation ``(3,)`` in [0, 1]: fixation cue (1 until the decision period), evidence for
    left, evidence for right (0.5 ± coherence / 2 plus noise during the stimulus, 0 otherwise).
    Actions: 0 fixate, 1 left, 2 right. ``info["gt"]``: 0 during fixation and stimulus, the
    correct side during the decision. Reward +1 for the correct side in the decision period.
    ``continuous=False``: an episode is one trial; True: trials follow each other and the
    episode never ends (NeuroGym's convention, with ``info["new_trial"]``).
    """

    metadata = {"render_modes": []}

    def __init__(self, coherence: float = 0.4, continuous: bool = False):
        self.coherence, self.continuous = coherence, continuous
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def _new_trial(self):
        self.t = 0
        self.side = int(self.np_random.integers(2))
        self.noise = self.np_random.normal(0.0, 0.2, size=(STIMULUS, 2))

    def _observation(self):
        observation = np.zeros(3, np.float32)
        observation[0] = float(self.t < FIXATION + STIMULUS)
        if FIXATION <= self.t < FIXATION + STIMULUS:
            evidence = 0.5 + self.coherence / 2 * np.array([1.0, -1.0])
            evidence = evidence if self.side == 0 else evidence[::-1]
            observation[1:] = np.clip(evidence + self.noise[self.t - FIXATION], 0.0, 1.0)
        return observation

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed, options=options)
        self._new_trial()
        return self._observation(), {}

    def step(self, action):
        decision = self.t >= FIXATION + STIMULUS
        gt = 1 + self.side if decision else 0
        reward = float(decision and action == gt)
        self.t += 1
        new_trial = self.t == TRIAL
        info = {"gt": gt, "new_trial": new_trial, "decision": decision}
        if new_trial and self.continuous:
            self._new_trial()
            return self._observation(), reward, False, False, info
        return self._observation(), reward, new_trial, False, info


def wrapped(**kwargs):
    env_kwargs = {k: kwargs.pop(k) for k in ("coherence", "continuous") if k in kwargs}
    arguments = {"target_key": "gt", "loss": "ce", "sequence_length": TRIAL, **kwargs}
    return SupervisedTaskWrapper(PerceptualDecision(**env_kwargs), **arguments)


def test_the_wrapped_env_describes_itself_as_a_bpl_task():
    env = wrapped()
    assert env.task == TaskSpec(3, 3, "ce", "all", TRIAL)
    assert env.get_wrapper_attr("task") == env.task
    assert env.action_space == gym.spaces.Box(-1, 1, (3,), np.float32)
    assert env.observation_space == gym.spaces.Box(0, 1, (3,), np.float32)
    assert wrapped(scored="last").task.scoring == "last"
    assert wrapped(scored="decision").task.scoring == "custom"


def test_the_reward_is_minus_the_cross_entropy_computed_by_torch():
    env = wrapped()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(TRIAL):
        logits = (2 * rng.standard_normal(3)).astype(np.float32)
        _, reward, terminated, _, info = env.step(logits)
        expected = torch.nn.functional.cross_entropy(
            torch.tensor(logits, dtype=torch.float64)[None], torch.tensor([info["gt"]])
        ).item()
        assert reward == pytest.approx(-expected, rel=1e-12) and info["loss"] == -reward
        np.testing.assert_array_equal(info["target"], np.eye(3, dtype=np.float32)[info["gt"]])
        assert info["scored"] and info["sequence_end"] == terminated == (t == TRIAL - 1)
        # the argmax went to the wrapped env as its action
        assert info["wrapped_reward"] == float(info["decision"] and logits.argmax() == info["gt"])


@pytest.mark.parametrize(
    "scored, expected",
    [
        ("last", [False] * (TRIAL - 1) + [True]),
        ("decision", [False] * (FIXATION + STIMULUS) + [True] * DECISION),
        (lambda info: info["gt"] == 0, [True] * (FIXATION + STIMULUS) + [False] * DECISION),
    ],
    ids=["last", "info-key", "callable"],
)
def test_scored_rules_mark_the_steps_and_unscored_steps_pay_nothing(scored, expected):
    env = wrapped(scored=scored)
    env.reset(seed=1)
    logits = np.array([0.3, -0.2, 0.1], np.float32)
    for t in range(TRIAL):
        _, reward, _, _, info = env.step(logits)
        assert info["scored"] == expected[t]
        if not expected[t]:
            assert reward == 0.0 and info["loss"] == 0.0
        else:
            assert reward < 0.0


def test_trials_within_one_episode_end_sequences_with_the_sequence_end_key():
    env = wrapped(continuous=True, sequence_end_key="new_trial")
    env.reset(seed=0)
    ends = []
    for _ in range(3 * TRIAL):
        _, _, terminated, truncated, info = env.step(np.zeros(3, np.float32))
        assert not (terminated or truncated)
        ends.append(info["sequence_end"])
    assert np.flatnonzero(ends).tolist() == [TRIAL - 1, 2 * TRIAL - 1, 3 * TRIAL - 1]


def test_mse_targets_and_a_box_action_space_pass_through():
    class Echo(gym.Env):
        """Target: the previous observation; action: a Box the prediction goes to as is."""

        observation_space = gym.spaces.Box(-1.0, 1.0, (2, 2), np.float64)
        action_space = gym.spaces.Box(-5.0, 5.0, (4,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed, options=options)
            self.x = self.np_random.uniform(-1, 1, (2, 2))
            return self.x, {}

        def step(self, action):
            self.received = action
            target, self.x = self.x.ravel(), self.np_random.uniform(-1, 1, (2, 2))
            return self.x, 0.0, False, False, {"next": target}

    env = SupervisedTaskWrapper(Echo(), target_key="next", loss="mse", sequence_length=5)
    assert env.task == TaskSpec(4, 4, "mse", "all", 5)
    observation, _ = env.reset(seed=0)
    assert observation.dtype == np.float32 and observation.shape == (4,)
    prediction = np.array([0.1, 0.2, -0.3, 0.4], np.float32)
    _, reward, _, _, info = env.step(prediction)
    expected = np.mean((prediction.astype(np.float64) - observation.astype(np.float64)) ** 2)
    assert reward == pytest.approx(-expected, rel=1e-6)
    np.testing.assert_array_equal(env.unwrapped.received, prediction)


def test_the_wrapped_env_passes_both_checkers():
    """Made by gym.make (the checker needs a spec); its max_episode_steps is the TaskSpec's T.
    The checker's one warning about checking a wrapper instead of ``env.unwrapped`` is the
    point here and is the only one allowed."""
    if "bpl_test/PerceptualDecision-v0" not in gym.registry:
        gym.register("bpl_test/PerceptualDecision-v0", PerceptualDecision, max_episode_steps=TRIAL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")
        for check in (gym_check_env, sb3_check_env):
            env = gym.make("bpl_test/PerceptualDecision-v0")
            env = SupervisedTaskWrapper(env, target_key="gt", loss="ce")
            assert env.task.sequence_length == TRIAL
            check(env)


SEQUENCE_LEARNERS = sorted(n for n in LEARNERS if issubclass(get_learner(n), SequenceLearner))


@pytest.mark.parametrize("name", SEQUENCE_LEARNERS)
def test_every_sequence_learner_trains_on_the_wrapped_env(name):
    env = gym.vector.SyncVectorEnv([lambda: wrapped() for _ in range(4)])
    learner = get_learner(name)(env, hidden_size=6, seed=0)
    before = [p.detach().clone() for p in learner.readout.parameters()]
    learner.learn(episodes=2)
    assert learner.num_episodes == 2 and learner.num_timesteps == 2 * 4 * TRIAL
    after = list(learner.readout.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def decision_accuracy(learner, trials: int, seed: int) -> float:
    """Fraction of the decision steps of fresh trials where the argmax is the correct side."""
    env = wrapped(coherence=0.6, scored="decision")
    observation, _ = env.reset(seed=seed)
    correct = decisions = 0
    state = None
    for _ in range(trials * TRIAL):
        prediction, state = learner.predict(observation, state)
        observation, _, terminated, _, info = env.step(prediction.astype(np.float32))
        if info["scored"]:
            decisions += 1
            correct += int(prediction.argmax() == info["gt"])
        if terminated:
            observation, _ = env.reset()
            state = None
    return correct / decisions


def test_bptt_learns_the_decision_through_the_wrapper():
    """The mean loss per batch falls well below its start (ln 3 per step at chance), and the
    decisions on fresh trials are mostly right."""
    env = gym.vector.SyncVectorEnv([lambda: wrapped(coherence=0.6) for _ in range(16)])
    learner = BPTT(env, core="lstm", hidden_size=16, lr_core=1e-2, lr_readout=1e-2, seed=0)
    history = MetricHistory()
    learner.learn(episodes=150, callback=history, log_interval=1)
    losses = np.array(history.history["train/loss"])
    assert losses[:20].mean() > 0.6 and losses[-20:].mean() < 0.5 * losses[:20].mean()
    assert decision_accuracy(learner, trials=50, seed=123) > 0.8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"loss": "hinge"}, ValueError, "unknown loss 'hinge'"),
        ({"target_key": 3}, TypeError, "target_key must be a str"),
        ({"scored": 1}, TypeError, "scored must be 'all', 'last', an info key"),
        ({"sequence_end_key": 0}, TypeError, "sequence_end_key must be a str or None"),
        ({"output_size": 0}, ValueError, "output_size must be an int >= 1, got 0"),
        ({"to_action": "argmax"}, TypeError, "to_action must be a callable or None"),
        ({"sequence_length": None}, ValueError, "has no spec.max_episode_steps"),
        ({"loss": "mse"}, ValueError, "output_size cannot be inferred for loss='mse'"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        wrapped(**kwargs)


def test_bad_envs_targets_and_actions_are_refused():
    with pytest.raises(TypeError, match="env must be a gymnasium.Env"):
        SupervisedTaskWrapper("CartPole-v1", target_key="gt", loss="ce")
    discrete = gym.make("FrozenLake-v1")
    with pytest.raises(TypeError, match="observation space must be a Box"):
        SupervisedTaskWrapper(discrete, target_key="gt", loss="ce")
    env = wrapped(target_key="label")
    env.reset(seed=0)
    with pytest.raises(KeyError, match=r"has no 'label' \(target_key\); its keys are"):
        env.step(np.zeros(3, np.float32))
    env = wrapped(output_size=2, to_action=lambda p: int(p.argmax()))
    seed = next(s for s in range(100) if env.reset(seed=s) and env.unwrapped.side == 1)
    env.reset(seed=seed)
    for _ in range(FIXATION + STIMULUS):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"info\['gt'\] = 2 is not a class in \[0, 2\)"):
        env.step(np.array([0.0, 1.0], np.float32))
    env = wrapped()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(3,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="must be a floating array"):
        env.step(np.zeros(3, np.int64))
