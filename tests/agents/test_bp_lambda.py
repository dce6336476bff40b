"""BP(lambda) against independent computations: autograd and explicit forward-view recursions.

Sequences are replayed from arrays (SequenceReplayVectorEnv) so the test knows every token.
All identities in float64.
"""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.analysis import alignment, future_gradients
from agents.bp_lambda import BPLambda
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.agents.autograd_reference import (
    EQUIVALENCE_CASES,
    NEW_CORE_CASES,
    NEW_CORES,
    core_kwargs,
    forward_view_update,
    randomise,
    unroll,
)

B, T, N_IN, N_OUT, H = 3, 6, 3, 2, 4


def make_data(loss, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(B, T, N_IN))
    if loss == "ce":
        targets = np.eye(N_OUT)[rng.integers(0, N_OUT, size=(B, T))]
    else:
        targets = rng.normal(size=(B, T, N_OUT))
    scored = rng.random(T) < 0.6
    scored[-1] = True
    # the env streams float32 tokens: use values float32 represents exactly
    return inputs.astype(np.float32).astype(np.float64), targets.astype(np.float32), scored


def make_learner(core, loss="mse", seed=0, **kwargs):
    inputs, targets, scored = make_data(loss, seed)
    env = SequenceReplayVectorEnv(inputs, targets, loss, scored)
    kwargs = {"lr_core": 0.0, "lr_readout": 0.0, "clip_synth_update": False, **kwargs}
    learner = BPLambda(
        env, **core_kwargs(core, N_IN, H), hidden_size=H, dtype="float64", seed=seed, **kwargs
    )
    return learner, (torch.tensor(inputs), torch.tensor(targets), torch.tensor(scored))


@pytest.mark.parametrize("core, synth_hidden, lam, gamma", EQUIVALENCE_CASES + NEW_CORE_CASES)
def test_summed_synthesiser_update_equals_forward_view(core, synth_hidden, lam, gamma):
    learner, (inputs, targets, scored) = make_learner(
        core, lam=lam, gamma=gamma, synth_hidden=synth_hidden, lr_synth=1e-3
    )
    randomise(learner.synthesiser, seed=1)
    randomise(learner.readout, seed=2)
    synth = copy.deepcopy(learner.synthesiser)
    states, immediate, jacobians = unroll(
        learner.core, learner.readout, learner.loss, inputs, targets, scored
    )
    learner.learn(episodes=1)

    params = list(synth.trace_parameters())
    expected = forward_view_update(synth, params, states, immediate, jacobians, lam, gamma)
    for p, want in zip(learner.synthesiser.trace_parameters(), expected, strict=True):
        torch.testing.assert_close(-p.grad, want, rtol=1e-10, atol=1e-12)
    assert any(w.abs().max() > 1e-3 for w in expected)  # the identity is not vacuous


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_output_only_traces_update_only_the_output_layer(core):
    learner, (inputs, targets, scored) = make_learner(
        core, lam=0.5, gamma=0.9, synth_hidden=5, synth_trace_parameters="output", lr_synth=1e-3
    )
    randomise(learner.synthesiser, seed=3)
    synth = copy.deepcopy(learner.synthesiser)
    hidden_before = [p.clone() for p in learner.synthesiser.parameters()][:2]
    states, immediate, jacobians = unroll(
        learner.core, learner.readout, learner.loss, inputs, targets, scored
    )
    learner.learn(episodes=1)
    params = list(synth.trace_parameters())
    assert len(params) == 2
    expected = forward_view_update(synth, params, states, immediate, jacobians, 0.5, 0.9)
    for p, want in zip(learner.synthesiser.trace_parameters(), expected, strict=True):
        torch.testing.assert_close(-p.grad, want, rtol=1e-10, atol=1e-12)
    for before, after in zip(
        hidden_before, list(learner.synthesiser.parameters())[:2], strict=True
    ):
        torch.testing.assert_close(before, after, rtol=0, atol=0)


@pytest.mark.parametrize("core", ["rnn", "lstm", *NEW_CORES])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_lambda_one_targets_the_autograd_future_gradient(core, loss):
    learner, (inputs, targets, scored) = make_learner(
        core, loss=loss, lam=1.0, gamma=1.0, lr_synth=1e-3
    )
    randomise(learner.synthesiser, seed=4)
    randomise(learner.readout, seed=5)
    synth = copy.deepcopy(learner.synthesiser)
    core_module, readout, loss_fn = learner.core, learner.readout, learner.loss

    # True future gradient: dL/ds_t of the whole batch-mean loss, minus the immediate part.
    state = torch.zeros(B, core_module.state_size, dtype=torch.float64, requires_grad=True)
    states, immediate_losses = [], []
    for t in range(T):
        state = core_module(inputs[:, t], state)
        states.append(state)
        step = loss_fn.value(readout(core_module.hidden(state)), targets[:, t]).mean() * scored[t]
        immediate_losses.append(step)
    total_grads = torch.autograd.grad(sum(immediate_losses), states, retain_graph=True)
    future = []
    for t in range(T):
        local = torch.autograd.grad(
            immediate_losses[t], states[t], retain_graph=True, allow_unused=True
        )[0]
        future.append(total_grads[t] - (0 if local is None else local))
    torch.testing.assert_close(future[-1], torch.zeros_like(future[-1]))

    learner.learn(episodes=1)
    detached = [s.detach() for s in states]
    params = list(synth.trace_parameters())
    expected = forward_view_update(synth, params, detached, None, None, 1.0, 1.0, targets=future)
    for p, want in zip(learner.synthesiser.trace_parameters(), expected, strict=True):
        torch.testing.assert_close(-p.grad, want, rtol=1e-10, atol=1e-12)


class Oracle(torch.nn.Module):
    """Stands in for the synthesiser: returns the true future gradients in call order."""

    def __init__(self, future):
        super().__init__()
        self.future, self.calls = future, 0

    def forward(self, state):  # noqa: ARG002 (replays fixed values whatever the state)
        self.calls += 1
        return self.future[self.calls - 1]


@pytest.mark.parametrize("core", ["rnn", "lstm", *NEW_CORES])
def test_core_update_with_the_true_future_gradient_is_bptt(core):
    learner, (inputs, targets, scored) = make_learner(
        core, lam=1.0, gamma=1.0, sg_weight=1.0, lr_core=1e-3, lr_readout=1e-3, lr_synth=0.0
    )
    randomise(learner.readout, seed=6)
    core_module, readout = copy.deepcopy(learner.core), copy.deepcopy(learner.readout)
    parameters = [*core_module.parameters(), *readout.parameters()]
    states = torch.zeros(B, core_module.state_size, dtype=torch.float64)
    states.requires_grad_(True)
    state, seq_states, total = states, [], 0.0
    for t in range(T):
        state = core_module(inputs[:, t], state)
        seq_states.append(state)
        prediction = readout(core_module.hidden(state))
        total = total + learner.loss.value(prediction, targets[:, t]).mean() * scored[t]
    bptt = torch.autograd.grad(total, parameters, retain_graph=True)

    # G_t = (l_{t+1} + G_{t+1}) J_{t+1}, by autograd: dL/ds_t minus the immediate part.
    total_grads = torch.autograd.grad(total, seq_states, retain_graph=True)
    future = []
    for t in range(T - 1):
        prediction = readout(core_module.hidden(seq_states[t]))
        local_loss = learner.loss.value(prediction, targets[:, t]).mean() * scored[t]
        local = torch.autograd.grad(local_loss, seq_states[t], retain_graph=True)[0]
        future.append((total_grads[t] - local).detach())

    oracle = Oracle(future)
    learner.synthesiser = oracle
    learner.learn(episodes=1)
    assert oracle.calls == T - 1
    got = [p.grad for p in (*learner.core.parameters(), *learner.readout.parameters())]
    for g, want in zip(got, bptt, strict=True):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)


def test_future_gradients_by_autograd_follow_the_discounted_recursion():
    learner, (inputs, targets, scored) = make_learner("lstm", lam=1.0, gamma=0.7)
    randomise(learner.readout, seed=7)
    states, immediate, jacobians = unroll(
        learner.core, learner.readout, learner.loss, inputs, targets, scored
    )
    _, future = future_gradients(
        learner.core,
        learner.readout,
        learner.loss,
        inputs.transpose(0, 1),
        targets.transpose(0, 1),
        scored[:, None].expand(T, B).double(),
        gamma=0.7,
    )
    expected = torch.zeros_like(states[-1])
    for t in range(T - 2, -1, -1):
        # per-sequence (not batch-mean) loss: immediate gradients times B
        expected = torch.einsum(
            "bi,bij->bj", B * immediate[t + 1] + 0.7 * expected, jacobians[t + 1]
        )
        torch.testing.assert_close(future[t], expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(future[-1], torch.zeros_like(future[-1]))


def largest_allocation(learner, episodes=1):
    """Bytes of the largest single allocation while the learner learns (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        learner.learn(episodes=episodes)
    return max(event.cpu_memory_usage for event in profiler.events())


def wide_learner(core, **kwargs):
    """H = 16: traces (B, d, d, d + 1) of 0.1 to 0.8 MB, ~16x any per-token tensor."""
    return BPLambda(
        replay_env(), core=core, hidden_size=16, dtype="float64", seed=0, lr_synth=1e-3, **kwargs
    )


def trace_bytes(learner):
    return sum(math.prod(shape) * 8 for shape in learner.synthesiser.trace_shapes(B))


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_trace_path_allocates_nothing_trace_sized_per_token(core):
    """Traces are preallocated; per token the decay, contraction and Jacobian add work in place."""
    learner = wide_learner(core, lam=0.9, gamma=0.9)
    learner.learn(episodes=1)  # allocates the traces (and the decay's scratch) once
    assert largest_allocation(learner, episodes=2) < 0.1 * trace_bytes(learner)


@pytest.mark.parametrize("lam, gamma", [(0.0, 0.9), (0.7, 0.0)])
def test_no_traces_are_stored_when_gamma_lambda_is_zero(lam, gamma):
    """e_t = dg(s_t)/dtheta then: the update is the synthesiser's vjp, exact without traces
    (the equivalence tests above cover lambda = 0)."""
    learner = wide_learner("lstm", lam=lam, gamma=gamma)
    assert largest_allocation(learner) < 0.1 * trace_bytes(learner)
    assert largest_allocation(wide_learner("lstm", lam=0.5, gamma=0.9)) >= trace_bytes(learner)


# ------------------------------------------------------------------------ interface and errors


def replay_env(loss="mse", seed=0, num_envs=None):
    inputs, targets, scored = make_data(loss, seed)
    return SequenceReplayVectorEnv(inputs, targets, loss, scored, num_envs=num_envs)


@pytest.mark.parametrize("update", ["sequence", "step"])
def test_save_load_predicts_identically_and_resumes_exactly(tmp_path, update):
    kwargs = dict(core="lstm", hidden_size=H, lr_synth=1e-2, update=update, seed=3)
    straight = BPLambda(replay_env(), **kwargs).learn(episodes=4)

    first = BPLambda(replay_env(), **kwargs).learn(episodes=2)
    first.save(tmp_path / "bp")
    loaded = BPLambda.load(tmp_path / "bp")
    obs = np.random.default_rng(0).normal(size=(5, N_IN)).astype(np.float32)
    for a, b in zip(first.predict(obs), loaded.predict(obs), strict=True):
        np.testing.assert_array_equal(a, b)

    resumed = BPLambda.load(tmp_path / "bp", env=replay_env())
    resumed.learn(episodes=2, reset_num_timesteps=False)
    assert resumed.num_timesteps == straight.num_timesteps == 4 * B * T
    for name in ("core", "readout", "synthesiser"):
        for p, q in zip(
            getattr(resumed, name).parameters(), getattr(straight, name).parameters(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_step_updates_change_parameters_every_token():
    inputs, targets, _ = make_data("mse")
    env = SequenceReplayVectorEnv(inputs, targets, "mse")  # every step scored
    learner = BPLambda(env, hidden_size=H, update="step", seed=0, lr_core=0.1)
    snapshots = [learner.core.weight_ih.detach().clone()]

    class Watch(BaseCallback):
        def _on_step(self):
            snapshots.append(self.model.core.weight_ih.detach().clone())
            return True

    learner.learn(episodes=1, callback=Watch())
    assert len(snapshots) == T + 1
    assert all(not torch.equal(a, b) for a, b in zip(snapshots, snapshots[1:], strict=False))


def test_predict_follows_the_sb3_recurrent_signature():
    learner = BPLambda(replay_env(), core="lstm", hidden_size=H, seed=0)
    obs = np.ones((2, N_IN), np.float32)
    prediction, state = learner.predict(obs)
    assert prediction.shape == (2, N_OUT) and state.shape == (2, 2 * H)
    again, _ = learner.predict(obs, state, episode_start=np.array([True, False]))
    np.testing.assert_array_equal(again[0], prediction[0])
    assert not np.array_equal(again[1], prediction[1])
    single, _ = learner.predict(obs[0])
    assert single.shape == (N_OUT,)
    with pytest.raises(ValueError, match=r"observation must have shape \(3,\) or \(B, 3\)"):
        learner.predict(np.ones((2, 4)))


class ReplayOne(gym.Env):
    """One fixed sequence as a single (non-vector) env, for SB3's DummyVecEnv."""

    def __init__(self, inputs, targets, scored):
        self.replay = SequenceReplayVectorEnv(inputs[:1], targets[:1], "mse", scored)
        self.observation_space = self.replay.single_observation_space
        self.action_space = self.replay.single_action_space

    def reset(self, *, seed=None, options=None):  # noqa: ARG002 (Gymnasium signature)
        super().reset(seed=seed)
        obs, info = self.replay.reset()
        return obs[0], info

    def step(self, action):
        obs, reward, terminated, truncated, _ = self.replay.step(action[None])
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}


def test_sb3_evaluate_policy_scores_the_learner():
    inputs, targets, scored = make_data("mse")
    learner = BPLambda(replay_env(), hidden_size=H, seed=0)
    env = DummyVecEnv([lambda: ReplayOne(inputs, targets, scored)])
    mean_reward, _ = evaluate_policy(learner, env, n_eval_episodes=2, warn=False)

    # independent: the same sequence through the learner's modules by hand
    with torch.no_grad():
        state, total = torch.zeros(1, learner.core.state_size), 0.0
        for t in range(T):
            state = learner.core(torch.tensor(inputs[:1, t], dtype=torch.float32), state)
            prediction = learner.readout(learner.core.hidden(state)).double()
            if scored[t]:
                total += float(learner.loss.value(prediction, torch.tensor(targets[:1, t])))
    assert mean_reward == pytest.approx(-total, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"lam": 1.5}, ValueError, r"lam must be a number in \[0, 1\], got 1.5"),
        ({"gamma": -0.1}, ValueError, r"gamma must be a number in \[0, 1\]"),
        ({"lr_core": -1e-3}, ValueError, "lr_core must be a finite number >= 0"),
        ({"lr_synth": float("inf")}, ValueError, "lr_synth must be a finite number >= 0"),
        ({"sg_weight": -1}, ValueError, "sg_weight must be a finite number >= 0"),
        (
            {"core": "elman"},
            ValueError,
            r"core must be one of \('rnn', 'lstm', 'gru'\) or a RecurrentCore instance.*'elman'",
        ),
        (
            {"core": torch.nn.GRUCell(3, 4)},
            TypeError,
            "core must be one of .* or a RecurrentCore instance .*, got GRUCell",
        ),
        ({"num_layers": 0}, ValueError, "num_layers must be an int >= 1, got 0"),
        (
            {"recurrent_init": "xavier"},
            ValueError,
            r"recurrent_init must be one of \('uniform', 'orthogonal'\), got 'xavier'",
        ),
        (
            {"spectral_radius": -1.0},
            ValueError,
            "spectral_radius must be a finite number > 0, got -1.0",
        ),
        (
            {"core": "gru", "activation": "identity"},
            ValueError,
            "activation='identity' is not available for kind='gru'",
        ),
        ({"update": "batch"}, ValueError, r"update must be one of \('sequence', 'step'\)"),
        ({"dtype": "float16"}, ValueError, "dtype must be one of"),
        ({"hidden_size": 0}, ValueError, "hidden_size must be an int >= 1"),
        ({"clip_synth_update": 1}, TypeError, "clip_synth_update must be a bool, got 1"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        BPLambda(replay_env(), **kwargs)


def test_envs_the_learner_cannot_handle_are_refused():
    with pytest.raises(ValueError, match="does not describe its task"):
        BPLambda(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="unknown env id 'bpl/Nope-v0'"):
        BPLambda("bpl/Nope-v0")
    with pytest.raises(TypeError, match="env must be an env id"):
        BPLambda(42)


def test_a_non_finite_synthetic_gradient_stops_learning_naming_the_step():
    learner = BPLambda(replay_env(), hidden_size=H, seed=0)
    with torch.no_grad():
        learner.synthesiser.output.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite .* at step 0 of the sequences"):
        learner.learn(episodes=1)


def test_a_non_finite_prediction_stops_learning_naming_the_step():
    learner = BPLambda(replay_env(), hidden_size=H, activation="identity", seed=0)
    with torch.no_grad():
        learner.core.weight_hh.fill_(1e20)  # |s_t| grows like 1e20^t: float32 overflows at t = 2
    with pytest.raises(FloatingPointError, match="non-finite prediction at step 2"):
        learner.learn(episodes=1)


# ---------------------------------------------------------------------------- learning


def train_toy(lam, updates, seed=0):
    learner = BPLambda(
        gym.make_vec("bpl/LineDraw-v0", num_envs=10),
        core="rnn",
        activation="identity",
        hidden_size=30,
        lam=lam,
        gamma=1.0,
        lr_core=0.0,
        lr_readout=0.0,
        lr_synth=1e-4,
        seed=seed,
    )
    learner.learn(episodes=updates)
    return alignment(learner, "bpl/LineDraw-v0", n_sequences=50, seed=seed + 1)


def test_toy_alignment_after_1000_updates_is_near_perfect_for_lambda_one():
    """The paper's toy claim (frozen linear RNN, 1000 updates; ~15 s)."""
    lam1, lam0 = train_toy(1.0, 1000), train_toy(0.0, 1000)
    assert lam1.mean() >= 0.9 and lam1.mean() > lam0.mean()


def test_a_non_finite_loss_gradient_later_in_the_sequence_names_its_token():
    inputs, targets, _ = make_data("mse")
    targets[:, 3] = np.nan
    env = SequenceReplayVectorEnv(inputs, targets, "mse")
    learner = BPLambda(env, hidden_size=H, seed=0)
    with pytest.raises(FloatingPointError, match="non-finite loss gradient or update at step 3 "):
        learner.learn(episodes=1)
