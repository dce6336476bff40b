"""BP(λ) with the reference code's conventions, each item against an explicit formula.

The expected numbers come from the LSTM written out in this file with torch operations and
autograd (docs/algorithm.md#differences-from-the-reference-implementation), never from the
learner's or the core's derivative code. All in float64.
"""

import copy
import pathlib
import runpy

import numpy as np
import pytest
import torch

from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.cores import LSTMCore
from agents.reference_conventions import (
    REFERENCE_ITEMS,
    no_output_gate_jacobian,
    no_output_gate_operator,
    no_output_gate_vjp,
)
from tests.agents.autograd_reference import (
    chunked_reference,
    forward_view_update,
    make_data,
    randomise,
    replay_env,
)

B, T, N_IN, N_OUT, H = 3, 6, 3, 2, 4
BETA = 0.7


def make_learner(core="lstm", conventions="exact", loss="bce", **kwargs):
    inputs, targets, scored = make_data(loss, B, T, N_IN, N_OUT, seed=0)
    env = replay_env(loss, inputs, targets, scored, B)
    kwargs = {"lr_core": 0.0, "lr_readout": 0.0, "clip_synth_update": False, **kwargs}
    learner = BPLambda(
        env, core=core, hidden_size=H, dtype="float64", seed=0, conventions=conventions, **kwargs
    )
    randomise(learner.readout, seed=2)
    randomise(learner.core, seed=3)
    return learner, (torch.tensor(inputs), torch.tensor(targets), torch.tensor(scored))


def lstm_step(core, x, s, hold_output_gate=False):
    """The LSTM written out: s' = [o ⊙ tanh(c'), c'], c' = f ⊙ c + i ⊙ u; returns (s', o).
    With ``hold_output_gate`` the output gate is a constant (detached) in s'."""
    h, c = s[:, :H], s[:, H:]
    a = x @ core.weight_ih.T + h @ core.weight_hh.T + core.bias
    i, f, u, o = (
        torch.sigmoid(a[:, :H]),
        torch.sigmoid(a[:, H : 2 * H]),
        torch.tanh(a[:, 2 * H : 3 * H]),
        torch.sigmoid(a[:, 3 * H :]),
    )
    c_next = f * c + i * u
    gate = o.detach() if hold_output_gate else o
    return torch.cat((gate * torch.tanh(c_next), c_next), dim=1), o.detach()


def per_sequence_jacobian(function, state):
    full = torch.autograd.functional.jacobian(function, state)
    return torch.stack([full[b, :, b, :] for b in range(state.shape[0])])


def unroll(core, readout, loss, inputs, targets, scored):
    """Per token t: s_t, l_t = ∂L_t/∂s_t, l̃_t = [l_h, ∂L_t/∂c_t with o_t held], the exact J_t
    and J_t with o_t held (by autograd of :func:`lstm_step`)."""
    state = torch.zeros(B, 2 * H, dtype=torch.float64)
    out = {"states": [], "l": [], "l_tilde": [], "J": [], "J_held": []}
    for t in range(T):
        x = inputs[:, t]
        out["J"].append(per_sequence_jacobian(lambda s, x=x: lstm_step(core, x, s)[0], state))
        out["J_held"].append(
            per_sequence_jacobian(lambda s, x=x: lstm_step(core, x, s, True)[0], state)
        )
        previous = state
        state, output_gate = lstm_step(core, x, state)
        state = state.detach()
        torch.testing.assert_close(state, core(x, previous).detach())  # the LSTM written out
        h = state[:, :H].clone().requires_grad_(True)
        c = state[:, H:].clone().requires_grad_(True)
        step_loss = loss.value(readout(h), targets[:, t]).mean() * scored[t]
        l_h = torch.autograd.grad(step_loss, h)[0] if scored[t] else torch.zeros_like(h)
        held = loss.value(readout(output_gate * torch.tanh(c)), targets[:, t]).mean() * scored[t]
        l_c = torch.autograd.grad(held, c)[0] if scored[t] else torch.zeros_like(c)
        out["states"].append(state)
        out["l"].append(torch.cat((l_h, torch.zeros_like(l_h)), dim=1))
        out["l_tilde"].append(torch.cat((l_h, l_c), dim=1))
    return out


def core_gradients(core, synth, unrolled, inputs, cell_signal_only):
    """Σ_t of the one-step gradient of the core for the signal m_t = l_t + β g_t (g := 0 on the
    last token), by autograd with s_{t−1} held. With ``cell_signal_only`` gates i, f, u learn
    from l_h ⊙ D + β g_c alone (the reference code's item 3): c' receives that signal directly
    and h' only through o."""
    core = copy.deepcopy(core)
    total, previous = 0.0, torch.zeros(B, 2 * H, dtype=torch.float64)
    for t in range(T):
        g = synth(unrolled["states"][t]).detach() if t < T - 1 else torch.zeros(B, 2 * H)
        m = unrolled["l"][t] + BETA * g
        s_next = lstm_step(core, inputs[:, t], previous)[0]
        if cell_signal_only:
            c_next = s_next[:, H:]
            a_o = (
                inputs[:, t] @ core.weight_ih[3 * H :].T
                + previous[:, :H] @ core.weight_hh[3 * H :].T
                + core.bias[3 * H :]
            )
            h_through_o = torch.sigmoid(a_o) * torch.tanh(c_next.detach())
            cell = unrolled["l_tilde"][t][:, H:] + BETA * g[:, H:]
            total = total + (m[:, :H] * h_through_o).sum() + (cell * c_next).sum()
        else:
            total = total + (m * s_next).sum()
        previous = unrolled["states"][t]
    return torch.autograd.grad(total, list(core.parameters()))


def readout_gradients(readout, loss, unrolled, targets, scored):
    """∂/∂(W_out, b_out) of Σ_t L_t (batch-mean losses), by autograd."""
    readout = copy.deepcopy(readout)
    total = sum(
        loss.value(readout(unrolled["states"][t][:, :H]), targets[:, t]).mean() * scored[t]
        for t in range(T)
    )
    return torch.autograd.grad(total, list(readout.parameters()))


# --------------------------------------------------------------------- item 1, the operator
def test_no_output_gate_jacobian_is_the_jacobian_with_the_output_gate_held():
    torch.manual_seed(0)
    core = LSTMCore(N_IN, H).double()
    x, s = torch.randn(B, N_IN, dtype=torch.float64), torch.randn(B, 2 * H, dtype=torch.float64)
    _, cache = core.step(x, s)
    want = per_sequence_jacobian(lambda state: lstm_step(core, x, state, True)[0], s)
    exact = per_sequence_jacobian(lambda state: lstm_step(core, x, state)[0], s)
    torch.testing.assert_close(no_output_gate_jacobian(core, cache), want)
    u, e = torch.randn(B, 2 * H, dtype=torch.float64), torch.randn(B, 2 * H, 5).double()
    torch.testing.assert_close(
        no_output_gate_vjp(core, cache, u), torch.einsum("bi,bij->bj", u, want)
    )
    out = torch.empty_like(e)
    no_output_gate_operator(core, cache).apply_block(e, out, scale=0.3)
    torch.testing.assert_close(out, 0.3 * want @ e)
    # the omitted output-gate path is a real part of J (h-rows only)
    assert (exact - want)[:, :H].abs().max() > 1e-3
    torch.testing.assert_close((exact - want)[:, H:], torch.zeros(B, H, 2 * H).double())


# --------------------------------------------------------------------- the synthesiser
@pytest.mark.parametrize("synth_update", ["trace", "forward_view"])
@pytest.mark.parametrize(
    "conventions, immediate, jacobian",
    [
        (["no_output_gate_path"], "l", "J_held"),
        (["immediate_through_cell"], "l_tilde", "J"),
        ("reference", "l_tilde", "J_held"),
    ],
)
def test_synthesiser_update_follows_the_items_recursion(
    synth_update, conventions, immediate, jacobian
):
    learner, (inputs, targets, scored) = make_learner(
        conventions=conventions, lam=0.5, gamma=0.9, lr_synth=1e-3, synth_update=synth_update
    )
    randomise(learner.synthesiser, seed=1)
    synth = copy.deepcopy(learner.synthesiser)
    unrolled = unroll(learner.core, learner.readout, learner.loss, inputs, targets, scored)
    learner.learn(episodes=1)
    params = list(synth.trace_parameters())
    expected = forward_view_update(
        synth, params, unrolled["states"], unrolled[immediate], unrolled[jacobian], 0.5, 0.9
    )
    exact = forward_view_update(
        synth, params, unrolled["states"], unrolled["l"], unrolled["J"], 0.5, 0.9
    )
    for p, want, other in zip(learner.synthesiser.trace_parameters(), expected, exact, strict=True):
        torch.testing.assert_close(-p.grad, want, rtol=1e-10, atol=1e-12)
        assert (want - other).abs().max() > 1e-4  # the item changes the update


def test_items_one_and_two_count_the_immediate_gradient_twice():
    """With a zero synthesiser the reference TD target is l̃ J_held = 2 l J_held: the update is
    exactly twice that of item 1 alone (lambda = 0, one-step targets)."""
    updates = []
    for conventions in (["no_output_gate_path"], ["no_output_gate_path", "immediate_through_cell"]):
        learner, _ = make_learner(conventions=conventions, lam=0.0, gamma=0.9, lr_synth=1e-3)
        learner.learn(episodes=1)
        updates.append([p.grad.clone() for p in learner.synthesiser.trace_parameters()])
    for once, twice in zip(*updates, strict=True):
        torch.testing.assert_close(twice, 2 * once, rtol=1e-12, atol=1e-15)
        assert once.abs().max() > 1e-4


# --------------------------------------------------------------------- the core and readout
@pytest.mark.parametrize(
    "conventions, cell_only, bias_factor, per_step",
    [
        ("exact", False, 1.0, False),
        (["gates_read_cell_signal"], True, 1.0, False),
        (["doubled_bias_gradient"], False, 2.0, False),
        (["readout_per_target_step"], False, 1.0, True),
        ("reference", True, 2.0, True),
    ],
)
def test_core_and_readout_gradients_follow_the_items(conventions, cell_only, bias_factor, per_step):
    learner, (inputs, targets, scored) = make_learner(
        conventions=conventions, sg_weight=BETA, lr_core=1e-3, lr_readout=1e-3, lr_synth=0.0
    )
    randomise(learner.synthesiser, seed=1)
    unrolled = unroll(learner.core, learner.readout, learner.loss, inputs, targets, scored)
    want_core = core_gradients(learner.core, learner.synthesiser, unrolled, inputs, cell_only)
    want_readout = readout_gradients(learner.readout, learner.loss, unrolled, targets, scored)
    learner.learn(episodes=1)
    w_ih, w_hh, bias = (p.grad for p in learner.core.parameters())
    torch.testing.assert_close(w_ih, want_core[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w_hh, want_core[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bias, bias_factor * want_core[2], rtol=1e-10, atol=1e-12)
    divisor = int(scored.sum()) if per_step else 1
    for p, want in zip(learner.readout.parameters(), want_readout, strict=True):
        torch.testing.assert_close(p.grad, want / divisor, rtol=1e-10, atol=1e-12)
    assert int(scored.sum()) > 1


def test_item_three_drops_part_of_the_core_gradient():
    """The dropped term β g_h ⊙ D is a real part of the core's gradient at a random
    synthesiser (so the item-3 test above is not vacuous)."""
    learner, (inputs, targets, scored) = make_learner()
    randomise(learner.synthesiser, seed=1)
    unrolled = unroll(learner.core, learner.readout, learner.loss, inputs, targets, scored)
    exact = core_gradients(learner.core, learner.synthesiser, unrolled, inputs, False)
    reference = core_gradients(learner.core, learner.synthesiser, unrolled, inputs, True)
    assert (exact[1] - reference[1]).abs().max() > 1e-3


def test_reference_on_the_rnn_only_scales_the_readout():
    """RNN: the synthesiser's update is the exact forward view, the core's gradient the exact
    one-step one, the readout's gradient divided by the number of scored steps."""
    learner, (inputs, targets, scored) = make_learner(
        core="rnn", conventions="reference", lam=0.5, gamma=0.9, sg_weight=BETA
    )
    learner.lr_core = learner.lr_readout = learner.lr_synth = 1e-3
    learner._optimizers = learner._make_optimizers()
    randomise(learner.synthesiser, seed=1)
    core, synth = copy.deepcopy(learner.core), copy.deepcopy(learner.synthesiser)
    states, previous, jacobians, immediate = [], torch.zeros(B, H, dtype=torch.float64), [], []
    for t in range(T):
        jacobians.append(per_sequence_jacobian(lambda s, x=inputs[:, t]: core(x, s), previous))
        previous = core(inputs[:, t], previous).detach()
        states.append(previous)
        h = previous.clone().requires_grad_(True)
        step_loss = learner.loss.value(learner.readout(h), targets[:, t]).mean() * scored[t]
        immediate.append(torch.autograd.grad(step_loss, h)[0] if scored[t] else 0 * h)
    params = list(synth.trace_parameters())
    want_synth = forward_view_update(synth, params, states, immediate, jacobians, 0.5, 0.9)
    total, previous = 0.0, torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        g = synth(states[t]).detach() if t < T - 1 else torch.zeros(B, H)
        total = total + ((immediate[t] + BETA * g) * core(inputs[:, t], previous)).sum()
        previous = states[t]
    want_core = torch.autograd.grad(total, list(core.parameters()))
    want_readout = readout_gradients(
        learner.readout, learner.loss, {"states": states}, targets, scored
    )
    learner.learn(episodes=1)

    assert learner._rule.items == ("readout_per_target_step",)
    for p, want in zip(learner.synthesiser.trace_parameters(), want_synth, strict=True):
        torch.testing.assert_close(-p.grad, want, rtol=1e-10, atol=1e-12)
    for p, want in zip(learner.core.parameters(), want_core, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=1e-10, atol=1e-12)
    for p, want in zip(learner.readout.parameters(), want_readout, strict=True):
        torch.testing.assert_close(p.grad, want / int(scored.sum()), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------- the baselines
@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (BPTT, {}),
        (TruncatedBPTT, {"n": 2}),
        (DNI, {"n": 2, "sg_weight": BETA, "gamma": 0.9, "lr_synth": 1e-3}),
    ],
)
def test_baselines_reference_doubles_the_bias_and_scales_the_readout(core, cls, kwargs):
    """The reference code's BPTT / truncated BPTT / DNI share items 4 and 5 (for the RNN too):
    the gradients are autograd's over the (truncated) sequence, the bias's doubled and the
    readout's divided by the number of scored steps."""
    inputs, targets, scored = make_data("bce", B, T, N_IN, N_OUT, seed=0)
    learner = cls(
        replay_env("bce", inputs, targets, scored, B),
        core=core,
        hidden_size=H,
        dtype="float64",
        seed=0,
        conventions="reference",
        **kwargs,
    )
    randomise(learner.readout, seed=2)
    synthesiser = getattr(learner, "synthesiser", None)
    if synthesiser is not None:
        randomise(synthesiser, seed=1)
    want_core, want_readout, want_synth = chunked_reference(
        learner.core,
        learner.readout,
        "bce",
        inputs,
        targets,
        scored,
        n=kwargs.get("n"),
        synthesiser=copy.deepcopy(synthesiser),
        sg_weight=kwargs.get("sg_weight", 0.0),
        gamma=kwargs.get("gamma", 1.0),
    )
    learner.learn(episodes=1)
    w_ih, w_hh, bias = (p.grad for p in learner.core.parameters())
    for got, want in [(w_ih, want_core[0]), (w_hh, want_core[1]), (bias, 2 * want_core[2])]:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for p, want in zip(learner.readout.parameters(), want_readout, strict=True):
        torch.testing.assert_close(p.grad, want / int(scored.sum()), rtol=1e-10, atol=1e-12)
    if synthesiser is not None:  # the synthesiser's regression is unchanged
        for p, want in zip(learner.synthesiser.parameters(), want_synth, strict=True):
            torch.testing.assert_close(p.grad, want, rtol=1e-10, atol=1e-12)
    assert learner.conventions == "reference"


def test_baselines_refuse_the_items_they_do_not_share():
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT)
    env = replay_env("mse", inputs, targets, scored, B)
    with pytest.raises(ValueError, match=r"do not apply to DNI with a LSTMCore; those that do"):
        DNI(env, core="lstm", conventions=["no_output_gate_path"])
    with pytest.raises(ValueError, match="it needs update='sequence', got 'step'"):
        TruncatedBPTT(env, core="rnn", conventions="reference", update="step")


# --------------------------------------------------------------------- arguments, checkpoints
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"conventions": "paper"},
            ValueError,
            r"conventions must be one of \('exact', 'reference'\)",
        ),
        ({"conventions": 5}, TypeError, "conventions must be a str or a list / tuple"),
        ({"conventions": ["bias"]}, ValueError, "conventions items must be names from"),
        (
            {"conventions": ["doubled_bias_gradient", "doubled_bias_gradient"]},
            ValueError,
            "names an item twice",
        ),
        (
            {"core": "rnn", "conventions": ["no_output_gate_path"]},
            ValueError,
            r"items \['no_output_gate_path'\] do not apply to BPLambda with a RNNCore; those "
            r"that do: \['readout_per_target_step'\]",
        ),
        ({"core": "gru", "conventions": "reference"}, ValueError, "got a GRUCore"),
        (
            {"core": "lstm", "num_layers": 2, "conventions": "reference"},
            ValueError,
            "got a StackedCore",
        ),
        (
            {"core": "lstm", "conventions": "reference", "update": "step"},
            ValueError,
            "it needs update='sequence', got 'step'",
        ),
    ],
)
def test_bad_conventions_are_refused(kwargs, error, message):
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT)
    with pytest.raises(error, match=message):
        BPLambda(replay_env("mse", inputs, targets, scored, B), **kwargs)


def test_replay_takes_only_the_gradient_scalings():
    inputs, targets, scored = make_data("mse", B, T, N_IN, N_OUT)
    env = replay_env("mse", inputs, targets, scored, B)
    with pytest.raises(ValueError, match="cannot be combined with synth_update='replay'"):
        BPLambda(env, core="lstm", conventions="reference", synth_update="replay")
    learner, (inputs, targets, scored) = make_learner(
        core="lstm",
        conventions=["doubled_bias_gradient", "readout_per_target_step"],
        synth_update="replay",
        sg_weight=BETA,
        lr_core=1e-3,
        lr_readout=1e-3,
        lr_synth=1e-3,
    )
    randomise(learner.synthesiser, seed=1)
    unrolled = unroll(learner.core, learner.readout, learner.loss, inputs, targets, scored)
    want_core = core_gradients(learner.core, learner.synthesiser, unrolled, inputs, False)
    want_readout = readout_gradients(learner.readout, learner.loss, unrolled, targets, scored)
    learner.learn(episodes=1)
    w_ih, w_hh, bias = (p.grad for p in learner.core.parameters())
    for got, want in [(w_ih, want_core[0]), (w_hh, want_core[1]), (bias, 2 * want_core[2])]:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for p, want in zip(learner.readout.parameters(), want_readout, strict=True):
        torch.testing.assert_close(p.grad, want / int(scored.sum()), rtol=1e-10, atol=1e-12)


def test_conventions_survive_a_checkpoint(tmp_path):
    learner, _ = make_learner(conventions=("doubled_bias_gradient", "no_output_gate_path"))
    assert learner.conventions == ["no_output_gate_path", "doubled_bias_gradient"]
    learner.save(tmp_path / "model.pt")
    loaded = BPLambda.load(tmp_path / "model.pt")
    assert loaded.conventions == learner.conventions
    assert loaded._rule.items == ("no_output_gate_path", "doubled_bias_gradient")
    assert set(REFERENCE_ITEMS) >= set(loaded.conventions)
    assert np.isfinite(loaded.predict(np.zeros(N_IN, np.float32))[0]).all()


def test_the_measuring_example_runs(monkeypatch, capsys):
    """examples/reference_conventions.py (the sizes in docs/algorithm.md) runs at a tiny size."""
    script = pathlib.Path(__file__).parents[2] / "examples" / "reference_conventions.py"
    argv = [str(script), "--hidden-size", "4", "--batch-size", "3"]
    monkeypatch.setattr("sys.argv", [*argv, "--pattern-length", "1", "--repeats", "1"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "item 1, omitted output-gate path / |J|_F" in out and "item 3" in out
