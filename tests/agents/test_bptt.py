"""BPTT, truncated BPTT and DNI against autograd through torch.nn.RNN / torch.nn.LSTM (float64).

Sequences are replayed from arrays (SequenceReplayVectorEnv), so the references see the same
tokens. After ``learn(episodes=1)`` in ``update="sequence"`` mode each parameter's ``.grad`` holds
the gradient the learner applied.
"""

import copy

import pytest

from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.no_sg import NoSG
from tests.agents.autograd_reference import (
    NEW_CORES,
    assert_all_close,
    chunked_reference,
    core_kwargs,
    learner_grads,
    make_data,
    online_chunked_reference,
    randomise,
    replay_env,
)

B, T, N_IN, N_OUT, H = 3, 7, 3, 2, 4


def mse_env():
    return replay_env("mse", *make_data("mse", B, T, N_IN, N_OUT), B)


def build(cls, core, loss="mse", seed=0, n_batches=1, **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=seed, n_batches=n_batches)
    env = replay_env(loss, inputs, targets, scored, B)
    learner = cls(
        env, **core_kwargs(core, N_IN, H), hidden_size=H, dtype="float64", seed=seed, **kwargs
    )
    randomise(learner.readout, seed=seed + 100)
    return learner, (inputs, targets, scored)


@pytest.mark.parametrize(
    "core, loss",
    [(core, loss) for core in ("rnn", "lstm") for loss in ("mse", "ce", "bce")]
    + [(core, "ce") for core in NEW_CORES],
)
def test_bptt_gradient_is_autograd_through_torch_rnn(core, loss):
    learner, data = build(BPTT, core, loss)
    core_grads, readout_grads, _ = chunked_reference(learner.core, learner.readout, loss, *data)
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, core_grads)
    assert_all_close(got_readout, readout_grads)
    assert all(g.abs().max() > 1e-4 for g in core_grads)  # not vacuous


@pytest.mark.parametrize(
    "core, n",
    [(core, n) for core in ("rnn", "lstm") for n in (1, 2, 3, 6)]
    + [(core, 3) for core in NEW_CORES],
)
def test_truncated_bptt_gradient_is_autograd_over_detached_chunks(core, n):
    learner, data = build(TruncatedBPTT, core, "ce", n=n)
    core_grads, readout_grads, _ = chunked_reference(
        learner.core, learner.readout, "ce", *data, n=n
    )
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, core_grads)
    assert_all_close(got_readout, readout_grads)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_truncation_changes_the_gradient(core):
    """The chunked references differ from each other, so the tests above can tell n apart."""
    learner, data = build(TruncatedBPTT, core, "mse", n=2)
    full, _, _ = chunked_reference(learner.core, learner.readout, "mse", *data)
    cut, _, _ = chunked_reference(learner.core, learner.readout, "mse", *data, n=2)
    assert max((a - b).abs().max() for a, b in zip(full, cut, strict=True)) > 1e-4


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("n", [T, T + 5])
def test_truncated_bptt_with_n_at_least_t_is_bptt(core, n):
    """Equal learning, several batches (Adam updates in between)."""
    tbptt, _ = build(TruncatedBPTT, core, "ce", n=n, n_batches=2, lr_core=1e-2, lr_readout=1e-2)
    bptt, _ = build(BPTT, core, "ce", n_batches=2, lr_core=1e-2, lr_readout=1e-2)
    tbptt.learn(episodes=4)
    bptt.learn(episodes=4)
    assert_all_close(list(tbptt.core.parameters()), list(bptt.core.parameters()))
    assert_all_close(list(tbptt.readout.parameters()), list(bptt.readout.parameters()))


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("update", ["sequence", "step"])
def test_truncated_bptt_with_n_1_is_no_sg(core, update):
    kwargs = {"n_batches": 2, "lr_core": 1e-2, "lr_readout": 1e-2, "update": update}
    tbptt, _ = build(TruncatedBPTT, core, "mse", n=1, **kwargs)
    no_sg, _ = build(NoSG, core, "mse", **kwargs)
    tbptt.learn(episodes=3)
    no_sg.learn(episodes=3)
    assert_all_close(list(tbptt.core.parameters()), list(no_sg.core.parameters()))
    assert_all_close(list(tbptt.readout.parameters()), list(no_sg.readout.parameters()))


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("n", [2, 3])
def test_step_update_applies_adam_after_every_chunk(core, n):
    learner, (inputs, targets, scored) = build(
        TruncatedBPTT, core, "ce", n=n, n_batches=2, update="step", lr_core=1e-2, lr_readout=1e-2
    )
    want_core, want_readout = online_chunked_reference(
        learner.core, learner.readout, "ce", inputs, targets, scored, n, B, lr=1e-2
    )
    learner.learn(episodes=2)
    assert_all_close(list(learner.core.parameters()), list(want_core.parameters()))
    assert_all_close(list(learner.readout.parameters()), list(want_readout.parameters()))
    adam_steps = learner._optimizers["core"].state[learner.core.weight_hh]["step"]
    assert int(adam_steps) == 2 * -(-T // n)


# ----------------------------------------------------------------------------------- DNI
@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("n", [1, 3])
def test_dni_with_a_zero_synthesiser_is_truncated_bptt(core, n):
    """Frozen zero synthesiser: DNI learns exactly as truncated BPTT, over several batches."""
    kwargs = {"n": n, "n_batches": 2, "lr_core": 1e-2, "lr_readout": 1e-2}
    dni, _ = build(DNI, core, "ce", lr_synth=0.0, **kwargs)
    tbptt, _ = build(TruncatedBPTT, core, "ce", **kwargs)
    assert all(not p.detach().any() for p in dni.synthesiser.parameters())
    dni.learn(episodes=3)
    tbptt.learn(episodes=3)
    assert_all_close(list(dni.core.parameters()), list(tbptt.core.parameters()))
    assert_all_close(list(dni.readout.parameters()), list(tbptt.readout.parameters()))


DNI_CASES = [
    (core, n, gamma, synth_hidden)
    for core in ("rnn", "lstm")
    for n in (1, 3)
    for gamma in (0.8, 1.0)
    for synth_hidden in (None, 5)
] + [(core, 3, 0.8, None) for core in NEW_CORES]


@pytest.mark.parametrize("core, n, gamma, synth_hidden", DNI_CASES)
def test_dni_gradients_and_synthesiser_target_match_autograd(core, n, gamma, synth_hidden):
    learner, data = build(
        DNI, core, "ce", n=n, gamma=gamma, sg_weight=0.7, synth_hidden=synth_hidden, lr_synth=1e-3
    )
    randomise(learner.synthesiser, seed=7)
    synthesiser = copy.deepcopy(learner.synthesiser)
    core_grads, readout_grads, synth_grads = chunked_reference(
        learner.core,
        learner.readout,
        "ce",
        *data,
        n=n,
        synthesiser=synthesiser,
        sg_weight=0.7,
        gamma=gamma,
    )
    learner.learn(episodes=1)
    got_core, got_readout = learner_grads(learner)
    assert_all_close(got_core, core_grads)
    assert_all_close(got_readout, readout_grads)
    assert_all_close([p.grad for p in learner.synthesiser.parameters()], synth_grads)
    assert all(g.abs().max() > 1e-4 for g in synth_grads)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
def test_dni_synthetic_gradient_changes_the_core_gradient(core):
    learner, data = build(DNI, core, "mse", n=2, sg_weight=1.0)
    randomise(learner.synthesiser, seed=8)
    plain, _, _ = chunked_reference(learner.core, learner.readout, "mse", *data, n=2)
    learner.learn(episodes=1)
    got, _ = learner_grads(learner)
    assert max((a - b).abs().max() for a, b in zip(got, plain, strict=True)) > 1e-4


def test_dni_frozen_core_still_trains_the_synthesiser():
    learner, data = build(DNI, "rnn", "mse", n=2, gamma=0.9, lr_core=0.0, lr_synth=1e-3)
    randomise(learner.synthesiser, seed=9)
    synthesiser = copy.deepcopy(learner.synthesiser)
    core_before = [p.clone() for p in learner.core.parameters()]
    _, _, synth_grads = chunked_reference(
        learner.core,
        learner.readout,
        "mse",
        *data,
        n=2,
        synthesiser=synthesiser,
        sg_weight=1.0,
        gamma=0.9,
    )
    learner.learn(episodes=1)
    assert_all_close([p.grad for p in learner.synthesiser.parameters()], synth_grads)
    assert_all_close(list(learner.core.parameters()), core_before, rtol=0, atol=0)


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("update", ["sequence", "step"])
@pytest.mark.parametrize("synth_hidden", [None, 5])
def test_dni_with_n_1_learns_exactly_as_bp_0(core, update, synth_hidden):
    """docs/algorithm.md#baselines: BP(0) is DNI with n = 1 (BP(lambda)'s update clipping off)."""
    kwargs = {
        "gamma": 0.9,
        "sg_weight": 0.5,
        "synth_hidden": synth_hidden,
        "update": update,
        "n_batches": 2,
        "lr_core": 1e-2,
        "lr_readout": 1e-2,
        "lr_synth": 1e-2,
    }
    dni, _ = build(DNI, core, "ce", n=1, **kwargs)
    bp0, _ = build(BPLambda, core, "ce", lam=0.0, clip_synth_update=False, **kwargs)
    dni.learn(episodes=3)
    bp0.learn(episodes=3)
    for name in ("core", "readout", "synthesiser"):
        modules = getattr(dni, name), getattr(bp0, name)
        assert_all_close(list(modules[0].parameters()), list(modules[1].parameters()))
    assert any(p.detach().abs().max() > 1e-3 for p in dni.synthesiser.parameters())


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("cls", [TruncatedBPTT, DNI])
@pytest.mark.parametrize(
    "n, error",
    [
        (0, ValueError),
        (-2, ValueError),
        (2.0, TypeError),
        (True, TypeError),
        ("3", TypeError),
        (None, TypeError),
    ],
)
def test_bad_truncation_is_refused_naming_n(cls, n, error):
    env = mse_env()
    with pytest.raises(error, match=r"n \(the truncation length, in tokens\) must be an int"):
        cls(env, n=n)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"gamma": 1.5}, ValueError, "gamma"),
        ({"sg_weight": -1.0}, ValueError, "sg_weight"),
        ({"lr_synth": -1}, ValueError, "lr_synth"),
        ({"synth_hidden": 0}, ValueError, "synth_hidden must be an int >= 1, got 0"),
        ({"synth_hidden": 2.5}, TypeError, "synth_hidden must be an int >= 1, got 2.5"),
        ({"update": "chunk"}, ValueError, "update"),
    ],
)
def test_bad_dni_arguments_are_refused(kwargs, error, message):
    env = mse_env()
    with pytest.raises(error, match=message):
        DNI(env, n=2, **kwargs)


def test_bptt_takes_no_update_mode():
    env = mse_env()
    with pytest.raises(TypeError, match="update"):
        BPTT(env, update="step")
