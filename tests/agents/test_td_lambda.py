"""TDLambda against explicit TD(λ) recursions and the online λ-return algorithm, its SB3-shaped
interface, and the 19-state random-walk numbers of Sutton & Barto
(docs/algorithm.md#random-walk)."""

import importlib.util
import pathlib

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from agents.td_lambda import TDLambda
from bpl_envs.random_walk import RandomWalkEnv, RandomWalkVectorEnv

N_STATES = 5


def _episodes(seed, n_episodes, n_states=N_STATES):
    """The episodes TDLambda(seed=seed) sees: [(states s_0..s_T, rewards r_1..r_T), ...]."""
    env = RandomWalkEnv(n_states=n_states)
    episodes = []
    for episode in range(n_episodes):
        state, _ = env.reset(seed=seed if episode == 0 else None)
        states, rewards, terminated = [int(state)], [], False
        while not terminated:
            state, reward, terminated, _, _ = env.step(0)
            states.append(int(state))
            rewards.append(reward)
        episodes.append((states, rewards))
    return episodes


def _reference_td_lambda(episodes, features, kind, lam, alpha, gamma):
    """Sutton & Barto's backward-view TD(λ), written out with numpy loops (§12.2, §12.5)."""
    w = np.zeros(features.shape[1])
    for states, rewards in episodes:
        z = np.zeros_like(w)
        v_old = 0.0
        for t, reward in enumerate(rewards):
            x, x_next = features[states[t]], features[states[t + 1]]
            terminal = t == len(rewards) - 1
            v, v_next = x @ w, (0.0 if terminal else x_next @ w)
            delta = reward + gamma * v_next - v
            if kind == "accumulate":
                z = gamma * lam * z + x
            elif kind == "replacing":
                z = np.where(x == 1, 1.0, gamma * lam * z)
            else:
                z = gamma * lam * z + (1 - alpha * gamma * lam * (z @ x)) * x
            if kind == "true_online":
                w = w + alpha * (delta + v - v_old) * z - alpha * (v - v_old) * x
                v_old = v_next
            else:
                w = w + alpha * delta * z
    return w


def _online_lambda_return(episodes, features, lam, alpha, gamma):
    """The online λ-return algorithm (Sutton & Barto §12.4): at every horizon h the episode's
    updates are redone from its initial weights toward truncated λ-returns G^λ|h_t, whose n-step
    returns bootstrap with the weights W[t+n−1] that ended horizon t+n−1."""
    w_start = np.zeros(features.shape[1])
    for states, rewards in episodes:
        horizon = len(rewards)
        ends = [w_start]  # ends[k] = w^k_k, the weights at the end of horizon k

        def value(state, weights):
            return 0.0 if state in (0, len(features) - 1) else features[state] @ weights

        for h in range(1, horizon + 1):

            def n_step(t, n, ends=ends, states=states, rewards=rewards):
                g = sum(gamma ** (k - t) * rewards[k] for k in range(t, t + n))
                return g + gamma**n * value(states[t + n], ends[t + n - 1])

            w = w_start.copy()
            for t in range(h):
                target = (1 - lam) * sum(lam ** (n - 1) * n_step(t, n) for n in range(1, h - t))
                target += lam ** (h - t - 1) * n_step(t, h - t)
                w = w + alpha * (target - features[states[t]] @ w) * features[states[t]]
            ends.append(w)
        w_start = ends[-1]
    return w_start


def _dense_features(seed, n_features=3, binary=False):
    generator = np.random.default_rng(seed)
    shape = (N_STATES + 2, n_features)
    return (generator.random(shape) < 0.5).astype(float) if binary else generator.normal(size=shape)


# --------------------------------------------------------------------------- the maths


@pytest.mark.parametrize("kind", ["accumulate", "replacing", "dutch", "true_online"])
@pytest.mark.parametrize("lam, gamma", [(0.7, 1.0), (0.9, 0.8)])
def test_agent_equals_the_explicit_td_lambda_recursion(kind, lam, gamma):
    features = _dense_features(1, binary=kind == "replacing")
    agent = TDLambda(
        RandomWalkEnv(N_STATES),
        lam=lam,
        alpha=0.05,
        gamma=gamma,
        trace=kind,
        seed=7,
        features=features,
    )
    agent.learn(episodes=4)
    expected = _reference_td_lambda(_episodes(7, 4), features, kind, lam, 0.05, gamma)
    np.testing.assert_allclose(agent.weights.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lam, gamma, alpha", [(0.5, 1.0, 0.1), (0.9, 0.9, 0.3), (1.0, 1.0, 0.05)])
def test_true_online_td_lambda_equals_the_online_lambda_return_algorithm(lam, gamma, alpha):
    features = _dense_features(2, n_features=4)
    agent = TDLambda(
        RandomWalkEnv(N_STATES),
        lam=lam,
        alpha=alpha,
        gamma=gamma,
        trace="true_online",
        seed=3,
        features=features,
    )
    agent.learn(episodes=3)
    expected = _online_lambda_return(_episodes(3, 3), features, lam, alpha, gamma)
    np.testing.assert_allclose(agent.weights.numpy(), expected, rtol=1e-11, atol=1e-13)


def test_at_lambda_0_every_trace_kind_is_td_0():
    episodes = _episodes(11, 5)
    td0 = np.zeros(N_STATES + 2)
    for states, rewards in episodes:
        for t, reward in enumerate(rewards):
            target = reward + (0.0 if t == len(rewards) - 1 else 0.9 * td0[states[t + 1]])
            td0[states[t]] += 0.2 * (target - td0[states[t]])
    for kind in ("accumulate", "replacing", "dutch", "true_online"):
        agent = TDLambda(
            RandomWalkEnv(N_STATES), lam=0.0, alpha=0.2, gamma=0.9, trace=kind, seed=11
        ).learn(episodes=5)
        np.testing.assert_allclose(agent.values, td0, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- the interface


class Recorder(BaseCallback):
    def __init__(self):
        super().__init__()
        self.events = []

    def _on_training_start(self):
        self.events.append("start")

    def _on_step(self):
        self.events.append("step")
        return True

    def _on_training_end(self):
        self.events.append("end")


def test_learn_predict_values_callbacks_and_logger():
    recorder = Recorder()
    agent = TDLambda(RandomWalkEnv(N_STATES), lam=0.8, alpha=0.1, seed=5)
    assert agent.learn(episodes=3, callback=recorder, log_interval=0) is agent
    lengths = [len(rewards) for _, rewards in _episodes(5, 3)]
    assert agent.num_timesteps == sum(lengths) and agent.num_episodes == 3
    assert recorder.model is agent
    assert recorder.events == ["start"] + ["step"] * sum(lengths) + ["end"]

    values = agent.values
    assert values.shape == (N_STATES + 2,) and values.dtype == np.float64
    assert values[0] == values[-1] == 0.0 and np.any(values != 0)
    np.testing.assert_array_equal(agent.predict_values(np.arange(N_STATES + 2)), values)
    assert agent.predict_values(2).shape == () and agent.predict_values(2) == values[2]
    action, state = agent.predict(2)
    assert action.shape == () and action.dtype == np.int64 and action == 0 and state is None
    actions, _ = agent.predict(np.array([1, 3, 5]))
    np.testing.assert_array_equal(actions, np.zeros(3, dtype=np.int64), strict=True)

    recorded = agent.logger.name_to_value
    assert recorded["rollout/ep_len"] == lengths[-1]
    true_values = (np.arange(N_STATES + 2) - 3) / 3
    expected_rms = np.sqrt(np.mean((values[1:-1] - true_values[1:-1]) ** 2))
    assert recorded["train/value_rms_error"] == pytest.approx(expected_rms, rel=1e-12)

    agent.learn(total_timesteps=10)
    assert 10 <= agent.num_timesteps < 10 + 100


def test_save_load_round_trip_and_exact_continuation(tmp_path):
    straight = TDLambda(
        RandomWalkEnv(N_STATES), lam=0.6, alpha=0.1, trace="true_online", seed=9
    ).learn(episodes=6)
    first = TDLambda(RandomWalkEnv(N_STATES), lam=0.6, alpha=0.1, trace="true_online", seed=9)
    first.learn(episodes=3)
    first.save(tmp_path / "td")

    predict_only = TDLambda.load(tmp_path / "td")
    np.testing.assert_array_equal(predict_only.values, first.values)
    assert predict_only.predict_values(4) == first.predict_values(4)
    assert (predict_only.lam, predict_only.alpha, predict_only.trace) == (0.6, 0.1, "true_online")

    resumed = TDLambda.load(tmp_path / "td.pt", env=RandomWalkEnv(N_STATES))
    resumed.learn(episodes=3, reset_num_timesteps=False)
    np.testing.assert_array_equal(resumed.values, straight.values)
    assert resumed.num_timesteps == straight.num_timesteps


def test_feature_tables_and_callables_survive_checkpoints(tmp_path):
    table = _dense_features(4)
    by_table = TDLambda(RandomWalkEnv(N_STATES), 0.5, 0.1, features=table, seed=1)
    by_callable = TDLambda(RandomWalkEnv(N_STATES), 0.5, 0.1, features=lambda s: table[s], seed=1)
    for agent in (by_table, by_callable):
        agent.learn(episodes=2)
    np.testing.assert_array_equal(by_table.weights, by_callable.weights)
    np.testing.assert_allclose(by_table.values, table @ by_table.weights.numpy(), rtol=1e-15)
    by_callable.save(tmp_path / "tabulated.pt")
    np.testing.assert_array_equal(
        TDLambda.load(tmp_path / "tabulated.pt").values, by_callable.values
    )

    box_env = gym.wrappers.TransformObservation(
        RandomWalkEnv(N_STATES),
        lambda s: np.array([s / 6.0], dtype=np.float32),
        gym.spaces.Box(0.0, 1.0, (1,), np.float32),
    )
    polynomial = lambda obs: np.array([1.0, obs[0], obs[0] ** 2])  # noqa: E731
    on_box = TDLambda(box_env, 0.5, 0.1, features=polynomial, seed=1).learn(episodes=2)
    on_box.save(tmp_path / "box.pt")
    with pytest.raises(ValueError, match="callable feature map"):
        TDLambda.load(tmp_path / "box.pt")
    reloaded = TDLambda.load(tmp_path / "box.pt", features=polynomial)
    obs = np.array([0.5], dtype=np.float32)
    assert reloaded.predict_values(obs) == on_box.predict_values(obs)
    assert on_box.predict_values(obs) == pytest.approx(polynomial(obs) @ on_box.weights.numpy())
    batch = np.array([[0.5], [0.25]], dtype=np.float32)
    np.testing.assert_allclose(
        TDLambda.load(tmp_path / "box.pt", features=polynomial).predict_values(batch),
        [polynomial(o) @ on_box.weights.numpy() for o in batch],
        rtol=1e-15,
    )
    np.testing.assert_array_equal(reloaded.predict(batch)[0], np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"observation must have shape \(1,\) or"):
        on_box.predict_values(np.zeros((2, 3)))


def test_sb3_checkpoint_callback_works(tmp_path):
    callback = CheckpointCallback(save_freq=20, save_path=str(tmp_path), name_prefix="td")
    agent = TDLambda(RandomWalkEnv(N_STATES), 0.5, 0.1, seed=2).learn(
        total_timesteps=45, callback=callback
    )
    saved = sorted(tmp_path.iterdir())
    assert [p.name for p in saved[:2]] == ["td_20_steps.zip", "td_40_steps.zip"]
    assert TDLambda.load(saved[0]).values.shape == agent.values.shape


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"lam": 1.5}, ValueError, r"lam must be a number in \[0, 1\], got 1.5"),
        ({"lam": -0.1}, ValueError, "lam must be"),
        ({"gamma": 1.01}, ValueError, "gamma must be a number in"),
        ({"alpha": -0.5}, ValueError, "alpha must be a finite number >= 0, got -0.5"),
        ({"trace": "eligibility"}, ValueError, "trace must be one of .*'true_online'.*eligibility"),
        ({"trace": ["accumulate"]}, ValueError, "trace must be one of"),
        ({"features": np.zeros((3, 2))}, ValueError, "features has 3 rows but the observation"),
        ({"features": np.zeros(7)}, ValueError, "2-D array"),
        ({"trace": "replacing", "features": np.full((7, 2), 0.5)}, ValueError, "binary"),
    ],
)
def test_bad_hyperparameters(kwargs, error, message):
    arguments = {"lam": 0.5, "alpha": 0.1, **kwargs}
    with pytest.raises(error, match=message):
        TDLambda(RandomWalkEnv(N_STATES), **arguments)


def test_bad_envs_and_observations():
    box_env = gym.wrappers.TransformObservation(
        RandomWalkEnv(N_STATES),
        lambda s: np.array([s], dtype=np.float32),
        gym.spaces.Box(0.0, 6.0, (1,), np.float32),
    )
    with pytest.raises(ValueError, match="not Discrete: pass features="):
        TDLambda(box_env, 0.5, 0.1)
    with pytest.raises(TypeError, match="VectorEnv"):
        TDLambda(RandomWalkVectorEnv(2), 0.5, 0.1)
    with pytest.raises(ValueError, match=r"action space must be Discrete\(1\)"):
        TDLambda(gym.make("FrozenLake-v1"), 0.5, 0.1)
    agent = TDLambda(RandomWalkEnv(N_STATES), 0.5, 0.1)
    for observation in (7, -1, 2.5, np.array([1, 9])):
        with pytest.raises(ValueError, match=r"observation must be an int in \[0, 7\)"):
            agent.predict(observation)
        with pytest.raises(ValueError, match=r"observation must be an int in \[0, 7\)"):
            agent.predict_values(observation)
    with pytest.raises(ValueError, match="exactly one budget"):
        agent.learn()


# --------------------------------------------------------------------------- Sutton & Barto


def _load_example():
    path = pathlib.Path(__file__).parents[2] / "examples" / "random_walk.py"
    spec = importlib.util.spec_from_file_location("random_walk_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("trace", ["accumulate", "true_online"])
def test_the_examples_batched_sweep_equals_one_agent_per_run(trace):
    """sweep() runs every (λ, α, run) as one batch element; run i's walk is that of a single
    env seeded seed + i (vector == sync), so it must equal TDLambda run by run."""
    example = _load_example()
    lambdas, alphas, runs, episodes = [0.0, 0.7], np.array([0.0, 0.2, 0.5]), 3, 2
    got = example.sweep(
        trace, lambdas, alphas, runs=runs, episodes=episodes, n_states=N_STATES, seed=5
    )
    for i, lam in enumerate(lambdas):
        for j, alpha in enumerate(alphas):
            rms = []
            for run in range(runs):
                env = RandomWalkEnv(N_STATES)
                agent = TDLambda(env, lam, alpha, trace=trace, seed=5 + run)
                for _ in range(episodes):
                    agent.learn(episodes=1, reset_num_timesteps=False)
                    rms.append(env.rms_error(agent.values))
            assert got[i, j] == pytest.approx(np.mean(rms), rel=1e-12)


def test_random_walk_reproduces_sutton_and_barto():
    """100 runs, first 10 episodes, 19 states: α = 0 gives √0.3 exactly; the best RMS over the
    α grid is 0.345 ± 0.015 for TD(0) and 0.26 ± 0.015 for accumulate λ = 0.8
    (docs/algorithm.md#random-walk; Sutton & Barto Figures 12.6 and 12.8), and 0.25 ± 0.015 for
    true online λ = 0.8."""
    example = _load_example()
    alphas = np.linspace(0.0, 1.0, 21)
    accumulate = example.sweep("accumulate", [0.0, 0.8], alphas, runs=100, episodes=10, seed=0)
    true_online = example.sweep("true_online", [0.8], alphas, runs=100, episodes=10, seed=0)
    assert accumulate.shape == (2, 21) and true_online.shape == (1, 21)
    np.testing.assert_allclose(accumulate[:, 0], np.sqrt(0.3), rtol=1e-14)
    np.testing.assert_allclose(true_online[:, 0], np.sqrt(0.3), rtol=1e-14)
    assert accumulate[0].min() == pytest.approx(0.345, abs=0.015)
    assert accumulate[1].min() == pytest.approx(0.26, abs=0.015)
    assert true_online[0].min() == pytest.approx(0.25, abs=0.015)
    best_alphas = [alphas[row.argmin()] for row in (*accumulate, *true_online)]
    assert 0.7 <= best_alphas[0] <= 0.9 and 0.2 <= best_alphas[1] <= 0.4
    assert 0.3 <= best_alphas[2] <= 0.5
