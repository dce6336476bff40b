"""BP(lambda)'s replay path, ``synth_update="replay"``, in float64.

Checked token by token against the online trace path (the reference), and, independently,
against the unrolled sum

    sum_tau (gamma lambda)^(u - tau) (delta_u J_u ... J_tau+1) . dg(s_tau)/dtheta

computed here from autograd Jacobians and autograd parameter gradients, whole or truncated to a
window.
"""

import copy
import itertools
import math

import pytest
import torch

from agents.bp_lambda import BPLambda
from agents.synthesisers import LinearSynthesiser, MLPSynthesiser
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.agents.autograd_reference import make_data, randomise, unroll

B, T, N_IN, N_OUT, H = 3, 6, 3, 2, 4
BATCHES = 3


def replay_env(seed=0):
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT, seed=seed, n_batches=BATCHES)
    return SequenceReplayVectorEnv(inputs, targets, "mse", scored, num_envs=B)


def recording(learner):
    """Record every increment sum_b delta . e the learner applies (before clipping), token by
    token: one at a time on the trace path, P tokens at a time (each (P, *theta.shape)) on the
    replay path."""
    applied = []
    apply_one, apply_many = learner._apply_synth_increments, learner._apply_replayed_increments

    def record_one(increments):
        applied.append([increment.clone() for increment in increments])
        apply_one(increments)

    def record_many(first_state, increments):
        applied.extend(
            [list(token) for token in zip(*(i.clone().unbind(0) for i in increments), strict=True)]
        )
        apply_many(first_state, increments)

    learner._apply_synth_increments = record_one
    learner._apply_replayed_increments = record_many
    return applied


def twin_learners(synth_update="replay", **kwargs):
    """A trace-path learner and a ``synth_update`` learner with the same parameters and data,
    recording their increments."""
    learners, records = [], []
    for path in ("trace", synth_update):
        learner = BPLambda(
            replay_env(),
            hidden_size=H,
            dtype="float64",
            seed=0,
            lr_synth=1e-2,
            lr_core=1e-2,
            lr_readout=1e-2,
            synth_update=path,
            **{k: v for k, v in kwargs.items() if path == synth_update or k != "replay_window"},
        )
        randomise(learner.synthesiser, seed=1)
        randomise(learner.readout, seed=2)
        records.append(recording(learner))
        learners.append(learner)
    return learners, records


def assert_same_run(learners, records):
    """Same increments at every token of every batch, and the same parameters at the end."""
    trace, replay = records
    assert len(trace) == len(replay) == BATCHES * (T - 1)
    for token, (want, got) in enumerate(zip(trace, replay, strict=True)):
        for w, g in zip(want, got, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"token {token}")
    for name in ("core", "readout", "synthesiser"):
        for p, q in zip(
            getattr(learners[0], name).parameters(),
            getattr(learners[1], name).parameters(),
            strict=True,
        ):
            torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=name)
    assert max(float(i.abs().max()) for token in trace for i in token) > 1e-3  # not vacuous


# ------------------------------------------------------------------- replay == trace path

LINEAR_CASES = list(
    itertools.product(
        ["rnn", "lstm"], [0.0, 0.5, 1.0], [0.9, 1.0], [False, True], ["sequence", "step"]
    )
)


@pytest.mark.parametrize("core, lam, gamma, clip, update", LINEAR_CASES)
def test_replay_gives_the_trace_paths_increments_at_every_token(core, lam, gamma, clip, update):
    """Linear synthesiser; core, readout and synthesiser all learn (Adam steps between batches,
    or after every token with update="step")."""
    learners, records = twin_learners(
        core=core, lam=lam, gamma=gamma, clip_synth_update=clip, update=update
    )
    for learner in learners:
        learner.learn(episodes=BATCHES)
    assert_same_run(learners, records)


@pytest.mark.parametrize(
    "core, update, clip, trace_parameters",
    list(
        itertools.product(["rnn", "lstm"], ["sequence", "step"], [False, True], ["all", "output"])
    ),
)
def test_replay_with_an_mlp_synthesiser_gives_the_trace_paths_increments(
    core, update, clip, trace_parameters
):
    """Exact in every mode: with update="step" the replay evaluates each dg(s_tau)/dtheta and
    J_tau at the parameters the trace path used for them (the copies kept with s_tau)."""
    learners, records = twin_learners(
        core=core,
        lam=0.7,
        gamma=0.9,
        clip_synth_update=clip,
        update=update,
        synth_hidden=5,
        synth_trace_parameters=trace_parameters,
    )
    for learner in learners:
        learner.learn(episodes=BATCHES)
    assert_same_run(learners, records)


@pytest.mark.parametrize("window", [None, T - 1, T, T + 4])
@pytest.mark.parametrize("update", ["sequence", "step"])
def test_a_window_that_covers_the_sequence_is_the_full_replay(window, update):
    """A sequence of T tokens sums over at most T - 1 states: any window >= T - 1 is exact."""
    learners, records = twin_learners(
        core="lstm", lam=1.0, gamma=0.9, update=update, synth_hidden=5, replay_window=window
    )
    for learner in learners:
        learner.learn(episodes=BATCHES)
    assert_same_run(learners, records)


def test_a_long_stream_slides_its_window_and_stays_exact():
    """Sequences of 40 tokens through a window of 7 (the window's buffer slides several times):
    every increment equals the explicit truncated sum."""
    steps, window = 40, 7
    inputs, targets, scored = make_data("mse", B, steps, N_IN, N_OUT, seed=5)
    learner = BPLambda(
        SequenceReplayVectorEnv(inputs, targets, "mse", scored),
        hidden_size=H,
        core="rnn",
        dtype="float64",
        seed=0,
        lam=0.9,
        gamma=1.0,
        synth_update="replay",
        replay_window=window,
        clip_synth_update=False,
    )
    randomise(learner.synthesiser, seed=1, scale=0.3)
    randomise(learner.readout, seed=2)
    expected = explicit_increments(
        learner, inputs, targets, scored, lam=0.9, gamma=1.0, window=window
    )
    applied = recording(learner)
    learner.learn(episodes=1)
    assert len(applied) == steps - 1
    for u, (want, got) in enumerate(zip(expected, applied, strict=True)):
        for w, g in zip(want, got, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"state {u}")


# -------------------------------------------- against the unrolled sum, computed independently


def explicit_increments(learner, inputs, targets, scored, lam, gamma, window):
    """sum_b delta_u . e_u for every state u of the first batch, as the unrolled sum over
    tau = u, u-1, ... (the last ``window`` of them, or all): rows w_u = delta_u,
    w_tau = gamma lam w_{tau+1} J_{tau+1} with autograd Jacobians, contracted with autograd's
    dg(s_tau)/dtheta; delta_u = (l_{u+1} + gamma g_{u+1}) J_{u+1} - g_u, g := 0 at the end."""
    x, y, s = (torch.as_tensor(a, dtype=torch.float64) for a in (inputs, targets, scored))
    states, immediate, jacobians = unroll(learner.core, learner.readout, learner.loss, x, y, s)
    synth = copy.deepcopy(learner.synthesiser)
    params = list(synth.trace_parameters())
    steps = len(states)
    g = [synth(state).detach() for state in states[:-1]] + [torch.zeros_like(states[-1])]
    oldest = (lambda u: 0) if window is None else (lambda u: max(0, u - window + 1))
    increments = []
    for u in range(steps - 1):
        row = torch.einsum("bi,bij->bj", immediate[u + 1] + gamma * g[u + 1], jacobians[u + 1])
        w = row - g[u]
        total = [torch.zeros_like(p) for p in params]
        for tau in range(u, oldest(u) - 1, -1):
            with torch.enable_grad():
                grads = torch.autograd.grad(synth(states[tau]), params, w)
            total = [a + b for a, b in zip(total, grads, strict=True)]
            w = gamma * lam * torch.einsum("bi,bij->bj", w, jacobians[tau])
        increments.append(total)
    return increments


@pytest.mark.parametrize(
    "core, synth_hidden, window",
    list(itertools.product(["rnn", "lstm"], [None, 5], [None, 1, 2, 4])),
)
def test_replay_equals_the_unrolled_sum_by_autograd(core, synth_hidden, window):
    lam, gamma = 0.8, 0.9
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT, seed=3)
    learner = BPLambda(
        SequenceReplayVectorEnv(inputs, targets, "mse", scored),
        core=core,
        hidden_size=H,
        dtype="float64",
        seed=0,
        lam=lam,
        gamma=gamma,
        synth_hidden=synth_hidden,
        synth_update="replay",
        replay_window=window,
    )
    randomise(learner.synthesiser, seed=1)
    randomise(learner.readout, seed=2)
    expected = explicit_increments(learner, inputs, targets, scored, lam, gamma, window)
    applied = recording(learner)
    learner.learn(episodes=1)
    assert len(applied) == T - 1
    for u, (want, got) in enumerate(zip(expected, applied, strict=True)):
        for w, g in zip(want, got, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"state {u}")
    if window is not None and window < T - 1:  # the window dropped something
        full = explicit_increments(learner, inputs, targets, scored, lam, gamma, None)
        assert not torch.allclose(full[-1][0], expected[-1][0], rtol=1e-6, atol=0)


# --------------------------------------------------------------------- clipping, metric


def test_the_clip_fraction_counts_the_rescaled_increments():
    """train/synth_clip_fraction = share of (token, tensor) increments with |sum_b delta.e| > B,
    checked against the explicit increments' norms; the same on the trace and replay paths."""
    lam, gamma = 1.0, 0.9
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT, seed=3)
    fractions = []
    for path in ("trace", "replay"):
        learner = BPLambda(
            SequenceReplayVectorEnv(inputs, targets, "mse", scored),
            core="rnn",
            hidden_size=H,
            dtype="float64",
            seed=0,
            lam=lam,
            gamma=gamma,
            synth_update=path,
            clip_synth_update=True,
        )
        randomise(learner.synthesiser, seed=1, scale=0.8)
        randomise(learner.readout, seed=2, scale=1.5)
        expected = explicit_increments(learner, inputs, targets, scored, lam, gamma, None)
        learner.learn(episodes=1, log_interval=0)  # (no dump: the logger keeps the values)
        fractions.append(learner.logger.name_to_value["train/synth_clip_fraction"])
    norms = torch.tensor([float(torch.linalg.vector_norm(i)) for token in expected for i in token])
    want = float((norms > B).double().mean())
    assert 0 < want < 1  # some increments were rescaled, some not
    assert fractions == [pytest.approx(want, abs=1e-12)] * 2


def test_no_clip_fraction_is_logged_without_clipping():
    learner = BPLambda(
        replay_env(), hidden_size=H, synth_update="replay", clip_synth_update=False, seed=0
    )
    learner.learn(episodes=1, log_interval=0)
    assert "train/synth_clip_fraction" not in learner.logger.name_to_value


# ------------------------------------------------------------------------ memory, errors


def largest_allocation(learner, episodes=1):
    """Bytes of the largest single allocation while the learner learns (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        learner.learn(episodes=episodes)
    return max(event.cpu_memory_usage for event in profiler.events())


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_replay_stores_states_not_traces(core):
    """Memory O(t·B·d): with H = 16 the traces would be 0.1 to 0.8 MB; nothing near that size
    is allocated by the replay."""
    learner = BPLambda(
        replay_env(),
        core=core,
        hidden_size=16,
        dtype="float64",
        seed=0,
        lr_synth=1e-3,
        lam=0.9,
        gamma=0.9,
        synth_update="replay",
    )
    trace_bytes = sum(math.prod(shape) * 8 for shape in learner.synthesiser.trace_shapes(B))
    assert largest_allocation(learner) < 0.1 * trace_bytes


def test_replay_survives_save_and_load(tmp_path):
    learner = BPLambda(replay_env(), hidden_size=H, synth_update="replay", replay_window=3, seed=0)
    learner.learn(episodes=1).save(tmp_path / "replay")
    loaded = BPLambda.load(tmp_path / "replay", env=replay_env())
    assert (loaded.synth_update, loaded.replay_window) == ("replay", 3)
    loaded.learn(episodes=1)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"synth_update": "replay", "replay_window": 0},
            ValueError,
            r"replay_window must be None .* or an int >= 1 .*, got 0",
        ),
        (
            {"synth_update": "replay", "replay_window": -3},
            ValueError,
            r"replay_window must be None .* or an int >= 1 .*, got -3",
        ),
        (
            {"synth_update": "replay", "replay_window": 2.5},
            TypeError,
            r"replay_window must be None .* or an int >= 1 .*, got 2.5 of type float",
        ),
        (
            {"synth_update": "replay", "replay_window": True},
            TypeError,
            r"replay_window must be .*, got True of type bool",
        ),
        (
            {"synth_update": "replay", "replay_window": "5"},
            TypeError,
            r"replay_window must be .*, got '5' of type str",
        ),
        (
            {"replay_window": 5},
            ValueError,
            r"replay_window=5 needs synth_update='replay'.*got synth_update='trace'",
        ),
        (
            {"synth_update": "forward_view", "clip_synth_update": False, "replay_window": 5},
            ValueError,
            r"replay_window=5 needs synth_update='replay'.*got "
            r"synth_update='forward_view'",
        ),
        (
            {"synth_update": "replays"},
            ValueError,
            r"synth_update must be one of \('trace', 'replay', 'forward_view'\), got 'replays'",
        ),
    ],
)
def test_bad_replay_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        BPLambda(replay_env(), **kwargs)


# ------------------------------------------------------------------------- synthesisers


@pytest.mark.parametrize(
    "synthesiser, linear",
    [
        (LinearSynthesiser(4), True),
        (MLPSynthesiser(4, 6, trace_parameters="output"), True),
        (MLPSynthesiser(4, 6, trace_parameters="all"), False),
    ],
)
def test_linear_in_trace_parameters_says_whether_dg_dtheta_moves_with_theta(synthesiser, linear):
    """The property replay relies on to skip parameter copies, checked by moving theta."""
    synthesiser = synthesiser.double()
    randomise(synthesiser, seed=0)
    s = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = synthesiser.parameter_jacobians(s)
    with torch.no_grad():
        for p in synthesiser.trace_parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(2)))
    after = synthesiser.parameter_jacobians(s)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert synthesiser.linear_in_trace_parameters is linear
    assert unchanged is linear


def test_the_replay_learns_the_toy_task_like_the_trace_path():
    """LineDraw with a frozen linear RNN (the paper's toy set-up), 30 updates in float32: the
    two paths end with the same synthesiser (float32 rounding apart)."""
    import gymnasium as gym

    learned = []
    for path in ("trace", "replay"):
        learner = BPLambda(
            gym.make_vec("bpl/LineDraw-v0", num_envs=10),
            core="rnn",
            activation="identity",
            hidden_size=30,
            lam=1.0,
            gamma=1.0,
            lr_core=0.0,
            lr_readout=0.0,
            lr_synth=1e-4,
            seed=0,
            synth_update=path,
        )
        learner.learn(episodes=30)
        learned.append([p.detach().clone() for p in learner.synthesiser.parameters()])
    for p, q in zip(*learned, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)
        assert p.abs().max() > 0
