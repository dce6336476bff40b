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

import numpy as np
import pytest
import torch

from agents.bp_lambda import BPLambda
from agents.cores import make_core
from agents.replay import BackwardReplay
from agents.synthesisers import make_synthesiser
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.agents.autograd_reference import NEW_CORES, core_kwargs, make_data, randomise, unroll

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


NEW_CORE_REPLAY_CASES = [
    (core, *case)
    for core in NEW_CORES
    for case in [("sequence", None, 0.5, 0.9, False), ("step", 5, 1.0, 1.0, True)]
]
"""The GRU, stacked (num_layers=2) and functional cores: a linear synthesiser learning per
sequence, and an MLP one per token with clipping (parameter copies of every core kind)."""


@pytest.mark.parametrize("core, update, synth_hidden, lam, gamma, clip", NEW_CORE_REPLAY_CASES)
def test_replay_gives_the_trace_paths_increments_on_every_core(
    core, update, synth_hidden, lam, gamma, clip
):
    learners, records = twin_learners(
        **core_kwargs(core, N_IN, H),
        lam=lam,
        gamma=gamma,
        clip_synth_update=clip,
        update=update,
        synth_hidden=synth_hidden,
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


@pytest.mark.parametrize("window", [7, None])
def test_a_long_sequence_is_replayed_in_blocks_and_stays_exact(window):
    """Sequences of 40 tokens: with update="sequence" the states are replayed in blocks of
    REPLAY_BLOCK = 32, and a window forgets the states it no longer needs after each block;
    every increment equals the explicit (truncated) sum."""
    steps = 40
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


@pytest.mark.parametrize("update, steps", [("sequence", 40), ("step", 16)])
def test_a_long_sequence_learns_exactly_like_the_trace_path(update, steps):
    """Everything learning: several replay blocks of 32 tokens (update="sequence") or one state
    per token with parameter copies (update="step") give the trace path's increments."""
    inputs, targets, scored = make_data("mse", B, steps, N_IN, N_OUT, seed=6, n_batches=2)
    learners, records = [], []
    for path in ("trace", "replay"):
        learner = BPLambda(
            SequenceReplayVectorEnv(inputs, targets, "mse", scored, num_envs=B),
            core="lstm",
            hidden_size=H,
            dtype="float64",
            seed=0,
            lam=0.9,
            gamma=0.9,
            update=update,
            synth_hidden=3,
            lr_synth=1e-2,
            lr_core=1e-2,
            lr_readout=1e-2,
            synth_update=path,
        )
        randomise(learner.synthesiser, seed=1, scale=0.3)
        records.append(recording(learner))
        learners.append(learner.learn(episodes=2))
    assert len(records[0]) == len(records[1]) == 2 * (steps - 1)
    for token, (want, got) in enumerate(zip(*records, strict=True)):
        for w, g in zip(want, got, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"token {token}")


# -------------------------------------------- against the unrolled sum, computed independently


def unrolled_sum(synth, states, immediate, jacobians, lam, gamma, window):
    """sum_b delta_u . e_u for every state u, as the unrolled sum over tau = u, u-1, ... (the
    last ``window`` of them, or all): rows w_u = delta_u, w_tau = gamma lam w_{tau+1} J_{tau+1},
    contracted with autograd's dg(s_tau)/dtheta; delta_u = (l_{u+1} + gamma g_{u+1}) J_{u+1} - g_u
    with g := 0 at the last token. ``jacobians[t]`` is J_t (B, d, d)."""
    synth = copy.deepcopy(synth)
    params = list(synth.trace_parameters())
    steps = len(states)
    g = [synth(state).detach() for state in states[:-1]] + [torch.zeros_like(states[-1])]
    increments = []
    for u in range(steps - 1):
        row = torch.einsum("bi,bij->bj", immediate[u + 1] + gamma * g[u + 1], jacobians[u + 1])
        w = row - g[u]
        total = [torch.zeros_like(p) for p in params]
        oldest = 0 if window is None else max(0, u - window + 1)
        for tau in range(u, oldest - 1, -1):
            with torch.enable_grad():
                grads = torch.autograd.grad(synth(states[tau]), params, w)
            total = [a + b for a, b in zip(total, grads, strict=True)]
            w = gamma * lam * torch.einsum("bi,bij->bj", w, jacobians[tau])
        increments.append(total)
    return increments


def explicit_increments(learner, inputs, targets, scored, lam, gamma, window):
    """:func:`unrolled_sum` for the learner's first batch: states, immediate gradients (of the
    batch-mean loss) and Jacobians by autograd through its core and readout."""
    x, y, s = (torch.as_tensor(a, dtype=torch.float64) for a in (inputs, targets, scored))
    states, immediate, jacobians = unroll(learner.core, learner.readout, learner.loss, x, y, s)
    return unrolled_sum(learner.synthesiser, states, immediate, jacobians, lam, gamma, window)


@pytest.mark.parametrize(
    "core, synth_hidden, window",
    list(itertools.product(["rnn", "lstm"], [None, 5], [None, 1, 2, 4]))
    + [(core, *case) for core in NEW_CORES for case in [(None, None), (5, 2)]],
)
def test_replay_equals_the_unrolled_sum_by_autograd(core, synth_hidden, window):
    lam, gamma = 0.8, 0.9
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT, seed=3)
    learner = BPLambda(
        SequenceReplayVectorEnv(inputs, targets, "mse", scored),
        **core_kwargs(core, N_IN, H),
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


def random_tokens(core_kind="lstm", steps=9, seed=0):
    """A float64 core and MLP synthesiser with random parameters, and the states, step caches,
    random immediate gradients, autograd Jacobians and g of one batch of sequences."""
    generator = torch.Generator().manual_seed(seed)
    core = make_core(core_kind, N_IN, H).double()
    synth = make_synthesiser(core.state_size, hidden_size=3).double()
    randomise(core, seed=seed + 1)
    randomise(synth, seed=seed + 2)
    state = torch.zeros(B, core.state_size, dtype=torch.float64)
    states, caches, jacobians = [], [], []
    for _ in range(steps):
        x = torch.randn(B, N_IN, generator=generator, dtype=torch.float64)
        full = torch.autograd.functional.jacobian(lambda s, x=x: core(x, s), state)
        jacobians.append(torch.stack([full[b, :, b, :] for b in range(B)]))
        with torch.no_grad():
            state, cache = core.step(x, state)
        states.append(state)
        caches.append(cache)
    immediate = [
        torch.randn(B, core.state_size, generator=generator, dtype=torch.float64)
        for _ in range(steps)
    ]
    with torch.no_grad():
        g = [synth(s) for s in states[:-1]] + [torch.zeros_like(states[-1])]
    return core, synth, states, caches, immediate, jacobians, g


@pytest.mark.parametrize("block", [1, 2, 5, 32])
@pytest.mark.parametrize("window", [None, 1, 3])
def test_backward_replay_gives_each_states_increment_in_any_block_size(block, window):
    """BackwardReplay on its own: states replayed one at a time or in blocks, with or without a
    window, give the unrolled sums by autograd, in order, each state once."""
    gamma, lam = 0.9, 0.8
    core, synth, states, caches, immediate, jacobians, g = random_tokens()
    expected = unrolled_sum(synth, states, immediate, jacobians, lam, gamma, window)
    replay = BackwardReplay(core, synth, gamma, lam, window, block=block)
    got, firsts = [], []
    for t in range(len(states)):
        replay.push(states[t], caches[t], immediate[t], g[t])
        if replay.pending >= block or (t == len(states) - 1 and replay.pending):
            first, increments = replay.flush()
            firsts.append(first)
            got.extend(zip(*(i.unbind(0) for i in increments), strict=True))
    assert firsts == list(range(0, len(states) - 1, block))
    assert len(got) == len(expected) == len(states) - 1
    for u, (want, mine) in enumerate(zip(expected, got, strict=True)):
        for w, m in zip(want, mine, strict=True):
            torch.testing.assert_close(m, w, rtol=1e-10, atol=1e-12, msg=f"state {u}")
    replay.clear()
    assert replay.pending == 0
    with pytest.raises(RuntimeError, match="flush\\(\\) needs a pending state"):
        replay.flush()


def test_backward_replay_refuses_parameter_copies_with_blocks():
    core, synth, *_ = random_tokens(steps=1)
    with pytest.raises(ValueError, match="parameter copies .* need block=1, got block=4"):
        BackwardReplay(core, synth, 0.9, 1.0, block=4, copy_core_parameters=True)
    with pytest.raises(ValueError, match="block must be an int >= 1"):
        BackwardReplay(core, synth, 0.9, 1.0, block=0)


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
            r"replay_window must be an int >= 1, got 0",
        ),
        (
            {"synth_update": "replay", "replay_window": -3},
            ValueError,
            r"replay_window must be an int >= 1, got -3",
        ),
        (
            {"synth_update": "replay", "replay_window": 2.5},
            TypeError,
            r"replay_window must be None or an int >= 1, got 2.5 \(float\)",
        ),
        (
            {"synth_update": "replay", "replay_window": True},
            TypeError,
            r"replay_window must be None or an int >= 1, got True \(bool\)",
        ),
        (
            {"synth_update": "replay", "replay_window": "5"},
            TypeError,
            r"replay_window must be None or an int >= 1, got '5' \(str\)",
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


@pytest.mark.parametrize("path", ["trace", "replay"])
def test_a_non_finite_update_names_the_token_the_trace_path_names(path):
    """The replay computes state u's increment later (at the end of the sequence here), but
    names the token at which the trace path would have: u + 1."""
    learner = BPLambda(replay_env(), hidden_size=H, seed=0, synth_update=path)

    def overflowing_vjp(_cache, u):
        return torch.full_like(u, float("inf"))

    learner.core.vjp = overflowing_vjp
    with pytest.raises(FloatingPointError, match="non-finite loss gradient or update at step 1 "):
        learner.learn(episodes=1)


@pytest.mark.parametrize("update", ["sequence", "step"])
def test_a_non_finite_loss_gradient_stops_the_replay_naming_its_token(update):
    inputs, targets, _ = make_data("mse", B, T, N_IN, N_OUT)
    targets[:, 3] = np.nan
    env = SequenceReplayVectorEnv(inputs, targets, "mse")
    learner = BPLambda(env, hidden_size=H, seed=0, synth_update="replay", update=update)
    with pytest.raises(FloatingPointError, match="non-finite loss gradient or update at step 3 "):
        learner.learn(episodes=1)


# ------------------------------------------------------------------------- learning


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
