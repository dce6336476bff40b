"""Every registered learner has the same interface: learn on a bpl/ env, save -> load -> predict
identical, resume exactly, and SB3's evaluate_policy scoring it as an independent forward pass
of its weights does."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from agents.registry import LEARNERS, check_learner_class, get_learner
from agents.sequence_learner import SequenceLearner
from agents.td_lambda import TDLambda
from tests.agents.autograd_reference import Twin

ENV_ID = "bpl/SequentialDigits-v0"
EXTRA = {"tbptt": {"n": 3}, "dni": {"n": 3, "lr_synth": 1e-2}, "bp_lambda": {"lr_synth": 1e-2}}


def make(name, env=ENV_ID, **kwargs):
    return get_learner(name)(
        env,
        core="lstm",
        hidden_size=5,
        n_envs=4,
        seed=3,
        lr_core=1e-2,
        lr_readout=1e-2,
        **{**EXTRA.get(name, {}), **kwargs},
    )


RECURRENT = sorted(
    name for name, entry in LEARNERS.items() if issubclass(entry.cls, SequenceLearner)
)


def test_registry_names_every_learner_with_a_description():
    assert set(LEARNERS) == {
        "bp_lambda",
        "bptt",
        "tbptt",
        "dni",
        "nosg",
        "rtrl",
        "uoro",
        "snap1",
        "eprop",
        "td_lambda",
    }
    assert RECURRENT == [
        "bp_lambda",
        "bptt",
        "dni",
        "eprop",
        "nosg",
        "rtrl",
        "snap1",
        "tbptt",
        "uoro",
    ]
    assert LEARNERS["td_lambda"].cls is TDLambda
    assert all(entry.description for entry in LEARNERS.values())
    with pytest.raises(ValueError, match=r"unknown learner 'lstm'; choose one of \['bp_lambda'"):
        get_learner("lstm")


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_built_in_learners_follow_the_contract_plug_ins_are_held_to(name):
    check_learner_class(LEARNERS[name].cls)


@pytest.mark.parametrize("name", RECURRENT)
def test_save_load_predict_and_resume(name, tmp_path):
    learner = make(name).learn(episodes=2)
    learner.save(tmp_path / "learner")
    learner.learn(episodes=2, reset_num_timesteps=False)

    rebuilt = type(learner).load(tmp_path / "learner")  # no env: predict only
    tokens = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    resumed = type(learner).load(tmp_path / "learner", env=make(name).env)
    state_a = state_b = None
    for t in range(8):
        before, state_a = rebuilt.predict(tokens[:, t], state_a)
        after, state_b = resumed.predict(tokens[:, t], state_b)
        np.testing.assert_array_equal(before, after)

    resumed.learn(episodes=2, reset_num_timesteps=False)
    assert resumed.num_timesteps == learner.num_timesteps == 4 * 4 * 8
    for a, b in zip(learner._modules().values(), resumed._modules().values(), strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


class Recorder(gym.Wrapper):
    """Keeps each episode's observations and the target of its scored step."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.episodes = getattr(self, "episodes", []) + [([obs], None)]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        tokens, _ = self.episodes[-1]
        if info["scored"]:
            self.episodes[-1] = (tokens, info["target"])
        if not (terminated or truncated):
            tokens.append(obs)
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("name", RECURRENT)
def test_sb3_evaluate_policy_scores_the_learners_forward_pass(name):
    learner = make(name, dtype="float64").learn(episodes=1)
    recorder = Recorder(gym.make(ENV_ID, split="test"))
    env = Monitor(recorder)
    env.reset(seed=5)
    rewards, lengths = evaluate_policy(learner, env, n_eval_episodes=4, return_episode_rewards=True)
    assert lengths == [8] * 4
    twin, readout = Twin(learner.core), learner.readout
    expected = []
    for tokens, target in recorder.episodes[1:5]:  # the first reset was ours
        x = torch.as_tensor(np.stack(tokens), dtype=torch.float64)[None]
        with torch.no_grad():
            hidden, _ = twin.run(x, torch.zeros(1, 10, dtype=torch.float64))
            logits = readout(hidden[:, -1]).float().double()
        expected.append(-float(F.cross_entropy(logits, torch.as_tensor(target).argmax()[None])))
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)
