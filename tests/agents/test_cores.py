"""Built-in one-layer cores: forward against torch's own RNN/LSTM/GRU layers, every analytic
derivative against torch autograd, in float64."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from agents.cores import GRUCore, LSTMCore, RNNCore, make_core
from tests.agents.core_reference import (
    TOL,
    autograd_parameter_jacobians,
    autograd_state_jacobian,
)

CONFIGS = [("rnn", "tanh"), ("rnn", "identity"), ("lstm", "tanh"), ("gru", "tanh")]
CONFIG_IDS = ["rnn-tanh", "rnn-identity", "lstm", "gru"]

sizes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))  # (B, n_in, H)


def build(kind, activation, batch, input_size, hidden_size, seed=0):
    """A float64 core and a random (x, s), with weights widened so the gates leave their linear
    range (the derivatives then differ clearly from their values at 0)."""
    generator = torch.Generator().manual_seed(seed)
    core = make_core(kind, input_size, hidden_size, activation).double()
    with torch.no_grad():
        for parameter in core.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.double))
    x = torch.randn(batch, input_size, generator=generator, dtype=torch.double)
    s = torch.randn(batch, core.state_size, generator=generator, dtype=torch.double)
    return core, x, s


def copy_into_torch_layer(core, layer, suffix=""):
    """Copy a core's weights into torch.nn.{RNN,LSTM,GRU}{,Cell}, splitting a single bias in two
    (the GRU's two biases copy over one to one)."""
    with torch.no_grad():
        getattr(layer, f"weight_ih{suffix}").copy_(core.weight_ih)
        getattr(layer, f"weight_hh{suffix}").copy_(core.weight_hh)
        if isinstance(core, GRUCore):
            getattr(layer, f"bias_ih{suffix}").copy_(core.bias_ih)
            getattr(layer, f"bias_hh{suffix}").copy_(core.bias_hh)
        else:
            getattr(layer, f"bias_ih{suffix}").copy_(0.25 * core.bias)
            getattr(layer, f"bias_hh{suffix}").copy_(0.75 * core.bias)


# --------------------------------------------------------------------------- forward
def test_rnn_forward_matches_torch_rnn_cell_and_unrolled_rnn():
    core, x, s = build("rnn", "tanh", 3, 4, 5)
    cell = torch.nn.RNNCell(4, 5).double()
    copy_into_torch_layer(core, cell)
    torch.testing.assert_close(core(x, s), cell(x, s), **TOL)

    xs = torch.randn(7, 3, 4, dtype=torch.double)
    layer = torch.nn.RNN(4, 5).double()
    copy_into_torch_layer(core, layer, "_l0")
    outputs, final = layer(xs, s[None])
    state = s
    for t in range(7):
        state = core(xs[t], state)
        torch.testing.assert_close(state, outputs[t], **TOL)
    torch.testing.assert_close(state, final[0], **TOL)


def test_lstm_forward_matches_torch_lstm_cell_and_unrolled_lstm():
    core, x, s = build("lstm", "tanh", 3, 4, 5)
    h, c = s[:, :5], s[:, 5:]
    cell = torch.nn.LSTMCell(4, 5).double()
    copy_into_torch_layer(core, cell)
    h_next, c_next = cell(x, (h, c))
    torch.testing.assert_close(core(x, s), torch.cat((h_next, c_next), 1), **TOL)

    xs = torch.randn(7, 3, 4, dtype=torch.double)
    layer = torch.nn.LSTM(4, 5).double()
    copy_into_torch_layer(core, layer, "_l0")
    outputs, (h_final, c_final) = layer(xs, (h[None], c[None]))
    state = s
    for t in range(7):
        state = core(xs[t], state)
        torch.testing.assert_close(core.hidden(state), outputs[t], **TOL)
    torch.testing.assert_close(state, torch.cat((h_final[0], c_final[0]), 1), **TOL)


def test_gru_forward_matches_torch_gru_cell_and_unrolled_gru():
    core, x, s = build("gru", "tanh", 3, 4, 5)
    cell = torch.nn.GRUCell(4, 5).double()
    copy_into_torch_layer(core, cell)
    torch.testing.assert_close(core(x, s), cell(x, s), **TOL)

    xs = torch.randn(7, 3, 4, dtype=torch.double)
    layer = torch.nn.GRU(4, 5).double()
    copy_into_torch_layer(core, layer, "_l0")
    outputs, final = layer(xs, s[None])
    state = s
    for t in range(7):
        state = core(xs[t], state)
        torch.testing.assert_close(state, outputs[t], **TOL)
    torch.testing.assert_close(state, final[0], **TOL)


def test_gru_follows_the_gate_equations():
    """h' = (1 - z) n + z h with r, z, n written out from the weight blocks (gate order r, z, n)."""
    core, x, h = build("gru", "tanh", 3, 2, 4)
    w_ir, w_iz, w_in = core.weight_ih.split(4)
    w_hr, w_hz, w_hn = core.weight_hh.split(4)
    b_ir, b_iz, b_in = core.bias_ih.split(4)
    b_hr, b_hz, b_hn = core.bias_hh.split(4)
    r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = torch.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    torch.testing.assert_close(core(x, h), (1 - z) * n + z * h, **TOL)


def test_identity_rnn_is_the_affine_map():
    core, x, s = build("rnn", "identity", 3, 4, 5)
    expected = x @ core.weight_ih.T + s @ core.weight_hh.T + core.bias
    torch.testing.assert_close(core(x, s), expected, **TOL)


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_step_returns_the_forward_state(kind, activation):
    core, x, s = build(kind, activation, 3, 2, 4)
    with torch.no_grad():
        s_next, _ = core.step(x, s)
    torch.testing.assert_close(s_next, core(x, s), rtol=0, atol=0)


# --------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**16))
def test_jacobian_vjp_and_jvp_match_autograd(kind, activation, size, seed):
    batch, input_size, hidden_size = size
    core, x, s = build(kind, activation, batch, input_size, hidden_size, seed)
    reference = autograd_state_jacobian(core, x, s)  # (B, d, d)
    d = core.state_size
    _, cache = core.step(x, s)
    generator = torch.Generator().manual_seed(seed + 1)
    v = torch.randn(batch, d, generator=generator, dtype=torch.double)
    e = torch.randn(batch, d, 3, 4, generator=generator, dtype=torch.double)
    e_vector = torch.randn(batch, d, generator=generator, dtype=torch.double)

    torch.testing.assert_close(core.jacobian(cache), reference, **TOL)
    torch.testing.assert_close(core.vjp(cache, v), torch.einsum("bk,bkj->bj", v, reference), **TOL)
    torch.testing.assert_close(
        core.jvp(cache, e), torch.einsum("bkj,bjpq->bkpq", reference, e), **TOL
    )
    torch.testing.assert_close(
        core.jvp(cache, e_vector), torch.einsum("bkj,bj->bk", reference, e_vector), **TOL
    )


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**16))
def test_local_jacobian_and_local_vjp_match_autograd(kind, activation, size, seed):
    batch, input_size, hidden_size = size
    core, x, s = build(kind, activation, batch, input_size, hidden_size, seed)
    reference = autograd_parameter_jacobians(core, x, s)
    m = torch.randn(batch, core.state_size, dtype=torch.double)
    reference_vjp = torch.autograd.grad(core(x, s.detach()), list(core.parameters()), m)
    with torch.no_grad():
        _, cache = core.step(x, s)

    local_jacobian = core.local_jacobian(cache)
    local_vjp = core.local_vjp(cache, m)
    assert len(local_jacobian) == len(local_vjp) == len(list(core.parameters()))
    for mine, theirs in zip(local_jacobian, reference, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)
    for mine, theirs in zip(local_vjp, reference_vjp, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_jvp_scale_and_preallocated_out(kind, activation):
    core, x, s = build(kind, activation, 3, 2, 4)
    reference = autograd_state_jacobian(core, x, s)
    _, cache = core.step(x, s)
    e = torch.randn(3, core.state_size, 5, 2, dtype=torch.double)
    e_before = e.clone()
    out = torch.full_like(e, float("nan"))

    result = core.jvp(cache, e, scale=0.37, out=out)

    assert result is out
    torch.testing.assert_close(out, 0.37 * torch.einsum("bkj,bjpq->bkpq", reference, e), **TOL)
    assert torch.equal(e, e_before)
    strided = e.transpose(2, 3)  # not contiguous: copied once, same result
    torch.testing.assert_close(
        core.jvp(cache, strided), torch.einsum("bkj,bjpq->bkpq", reference, strided), **TOL
    )


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_jvp_into_out_allocates_far_less_than_e(kind, activation):
    """No expanded weights, no copy of e and no (B, 4H, P) scratch: the only temporaries are
    O(B·H²) (the LSTM's ∂s'/∂h block), here under a tenth of e's bytes."""
    core, x, s = build(kind, activation, 4, 3, 8)
    _, cache = core.step(x, s)
    e = torch.randn(4, core.state_size, 400, dtype=torch.double)
    out = torch.empty_like(e)
    core.jvp(cache, e, scale=0.5, out=out)  # warm-up
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        core.jvp(cache, e, scale=0.5, out=out)
    allocated = sum(max(event.cpu_memory_usage, 0) for event in profiler.events())
    assert allocated < 0.1 * e.numel() * e.element_size()


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_jacobian_operator_applies_to_any_block_like_the_autograd_jacobian(kind, activation):
    """Blocks of rows and (strided) columns of a (B, d, P) tensor, written into a buffer, with a
    scale that changes between calls: each equals scale · J[rows] e by autograd; e is untouched."""
    core, x, s = build(kind, activation, 4, 2, 3)
    reference = autograd_state_jacobian(core, x, s)
    _, cache = core.step(x, s)
    operator = core.jacobian_operator(cache)
    d = core.state_size
    assert operator.shape == (4, d, d) and operator.dtype == torch.double
    e = torch.randn(4, d, 9, dtype=torch.double)
    e_before = e.clone()
    for rows, cols, scale in [
        (slice(None), slice(None), 1.0),
        (slice(1, 3), slice(None), 0.5),
        (slice(2, 3), slice(2, 7), 0.5),  # one element, strided columns: the GEMM path
        (slice(0, 1), slice(0, 9, 4), -2.0),  # non-unit column stride
        (slice(3, 4), slice(None), 1.0),
    ]:
        block = e[rows, :, cols]
        out = torch.full(block.shape, float("nan"), dtype=torch.double)
        assert operator.apply_block(block, out, rows, scale) is out
        expected = scale * torch.einsum("bkj,bjp->bkp", reference[rows], block)
        torch.testing.assert_close(out, expected, **TOL)
    assert torch.equal(e, e_before)


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_jacobian_operator_rejects_mismatched_blocks(kind, activation):
    core, x, s = build(kind, activation, 3, 2, 4)
    _, cache = core.step(x, s)
    operator = core.jacobian_operator(cache)
    d = core.state_size
    e = torch.zeros(2, d, 5, dtype=torch.double)
    with pytest.raises(ValueError, match=rf"b = 3 \(rows 0:3\) and d = {d}, got \(2, {d}, 5\)"):
        operator.apply_block(e, torch.zeros_like(e))
    with pytest.raises(ValueError, match="rows must be a slice with step 1"):
        operator.apply_block(e, torch.zeros_like(e), slice(0, 3, 2))
    with pytest.raises(TypeError, match="e must have the parameters' dtype torch.float64"):
        operator.apply_block(e.float(), torch.zeros_like(e.float()), slice(0, 2))
    with pytest.raises(ValueError, match="out must not share memory with e"):
        operator.apply_block(e, e, slice(0, 2))


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_bptt_gradient_from_vjp_and_local_vjp_recursion(kind, activation):
    """Σ_t (l_t + G_t) (∂s_t/∂θ)_local with G_{t-1} = (l_t + G_t) J_t is the BPTT gradient
    (docs/algorithm.md#how-the-core-learns, with a perfect synthesiser): checked against
    autograd on the unrolled sequence, for a loss Σ_t l_t · s_t."""
    steps, batch = 6, 3
    core, _, s0 = build(kind, activation, batch, 2, 4)
    with torch.no_grad():
        for parameter in core.parameters():
            parameter.mul_(0.5)
    xs = torch.randn(steps, batch, 2, dtype=torch.double)
    ls = torch.randn(steps, batch, core.state_size, dtype=torch.double)

    state, loss = s0, 0.0
    for t in range(steps):
        state = core(xs[t], state)
        loss = loss + (ls[t] * state).sum()
    reference = torch.autograd.grad(loss, list(core.parameters()))

    with torch.no_grad():
        caches, state = [], s0
        for t in range(steps):
            state, cache = core.step(xs[t], state)
            caches.append(cache)
    gradients = [torch.zeros_like(p) for p in core.parameters()]
    future = torch.zeros(batch, core.state_size, dtype=torch.double)  # G_t
    for t in reversed(range(steps)):
        signal = ls[t] + future  # dL/ds_t
        for total, local in zip(gradients, core.local_vjp(caches[t], signal), strict=True):
            total += local
        future = core.vjp(caches[t], signal)  # G_{t-1}
    for mine, theirs in zip(gradients, reference, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_stacked_caches_serve_every_step_in_one_call(kind, activation):
    """concat_caches of three steps: vjp gives each step's v J_t (autograd's per-step Jacobians)
    in its rows, and local_vjp the sum of the steps' local gradients."""
    core, x, s = build(kind, activation, 2, 3, 4, seed=5)
    steps, states = [], [s]
    with torch.no_grad():
        for t in range(3):
            state, cache = core.step(x * (t + 1), states[-1])
            steps.append(cache)
            states.append(state)
    stacked = core.concat_caches(steps)
    assert type(stacked) is type(steps[0]) and stacked.x.shape[0] == 6
    assert core.concat_caches(steps[:1]) is steps[0]
    v = torch.randn(6, core.state_size, dtype=torch.double)
    rows = core.vjp(stacked, v)
    for t in range(3):
        jacobian = autograd_state_jacobian(core, x * (t + 1), states[t])
        want = torch.einsum("bi,bij->bj", v[2 * t : 2 * t + 2], jacobian)
        torch.testing.assert_close(rows[2 * t : 2 * t + 2], want, **TOL)
    summed = [
        sum(parts)
        for parts in zip(
            *(core.local_vjp(c, v[2 * t : 2 * t + 2]) for t, c in enumerate(steps)), strict=True
        )
    ]
    for mine, theirs in zip(core.local_vjp(stacked, v), summed, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)


def test_derivatives_carry_no_graph_and_leave_the_grad_mode_alone():
    """The derivative methods run without gradient tracking whether it is on or off around them
    (agents.grad_mode.no_grad), and leave it as it was."""
    core, x, s = build("lstm", "tanh", 2, 3, 4)
    _, cache = core.step(x, s)
    v = torch.randn(2, core.state_size, dtype=torch.double, requires_grad=True)
    for enabled in (True, False):
        with torch.set_grad_enabled(enabled):
            assert not core.vjp(cache, v).requires_grad
            assert not any(g.requires_grad for g in core.local_vjp(cache, v))
            assert torch.is_grad_enabled() is enabled
    assert core(x, s).requires_grad  # forward stays differentiable


# --------------------------------------------------------------------------- structure
@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_parameters_states_and_initialisation(kind, activation):
    hidden_size, input_size = 64, 3
    torch.manual_seed(0)
    core = make_core(kind, input_size, hidden_size, activation)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    state_size = 2 * hidden_size if kind == "lstm" else hidden_size
    assert (core.input_size, core.hidden_size, core.state_size) == (3, 64, state_size)
    biases = ["bias_ih", "bias_hh"] if kind == "gru" else ["bias"]
    assert [(name, tuple(p.shape)) for name, p in core.named_parameters()] == [
        ("weight_ih", (gates * hidden_size, input_size)),
        ("weight_hh", (gates * hidden_size, hidden_size)),
    ] + [(name, (gates * hidden_size,)) for name in biases]
    bound = 1 / math.sqrt(hidden_size)
    for parameter in core.parameters():  # U(-1/√H, 1/√H): inside the bound, spread across it
        assert parameter.abs().max() <= bound
        assert parameter.min() < -0.5 * bound and parameter.max() > 0.5 * bound
        assert abs(parameter.std().item() - bound / math.sqrt(3)) < 0.25 * bound

    core = core.double()
    state = core.initial_state(5)
    assert state.shape == (5, state_size) and state.dtype == torch.float64
    assert torch.count_nonzero(state) == 0
    s = torch.randn(5, state_size, dtype=torch.double)
    hidden = core.hidden(s)
    assert hidden.shape == (5, hidden_size)
    assert hidden.data_ptr() == s.data_ptr() and torch.equal(hidden, s[:, :hidden_size])


def test_float32_core_keeps_float32():
    core = make_core("lstm", 3, 4)
    x = torch.randn(2, 3)
    s_next, cache = core.step(x, core.initial_state(2))
    assert s_next.dtype == torch.float32 == core.initial_state(1).dtype
    assert core.jvp(cache, torch.randn(2, 8, 6)).dtype == torch.float32


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "arguments, error, words",
    [
        (("elman", 3, 4), ValueError, ["kind", "'elman'", "'rnn'", "'lstm'", "'gru'"]),
        (("rnn", 3, 4, "relu"), ValueError, ["activation", "'relu'", "'tanh'", "'identity'"]),
        (("lstm", 3, 4, "identity"), ValueError, ["activation", "'identity'", "'lstm'", "'rnn'"]),
        (("gru", 3, 4, "identity"), ValueError, ["activation", "'identity'", "'gru'", "'rnn'"]),
        (("rnn", 0, 4), ValueError, ["input_size", "0"]),
        (("lstm", 3, -2), ValueError, ["hidden_size", "-2"]),
        (("rnn", 3, 4.0), TypeError, ["hidden_size", "4.0", "float"]),
        (("rnn", True, 4), TypeError, ["input_size", "True", "bool"]),
    ],
)
def test_make_core_rejects_bad_arguments(arguments, error, words):
    with pytest.raises(error) as raised:
        make_core(*arguments)
    for word in words:
        assert word in str(raised.value)


def test_classes_reject_bad_arguments_too():
    with pytest.raises(ValueError, match="activation.*'sigmoid'"):
        RNNCore(2, 3, activation="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be an int >= 1, got 0"):
        LSTMCore(2, 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        RNNCore(2, 3).initial_state(0)


@pytest.mark.parametrize("kind, activation", CONFIGS, ids=CONFIG_IDS)
def test_wrong_inputs_are_named_in_the_error(kind, activation):
    core, x, s = build(kind, activation, 3, 2, 4)
    d = core.state_size
    with pytest.raises(ValueError, match=r"x must have shape \(any, 2\), got \(3, 5\)"):
        core(torch.zeros(3, 5, dtype=torch.double), s)
    with pytest.raises(ValueError, match=r"x must have shape \(any, 2\), got \(2,\)"):
        core.step(torch.zeros(2, dtype=torch.double), s)
    with pytest.raises(ValueError, match=rf"s must have shape \(3, {d}\), got \(2, {d}\)"):
        core(x, s[:2])
    with pytest.raises(ValueError, match=rf"s must have shape \(3, {d}\), got \(3, {d + 1}\)"):
        core.step(x, torch.zeros(3, d + 1, dtype=torch.double))
    with pytest.raises(TypeError, match="x must have the parameters' dtype torch.float64"):
        core(x.float(), s)
    with pytest.raises(TypeError, match="s must be a torch.Tensor, got list"):
        core(x, s.tolist())

    _, cache = core.step(x, s)
    with pytest.raises(ValueError, match=rf"v must have shape \(3, {d}\), got \(3, {d}, 1\)"):
        core.vjp(cache, torch.zeros(3, d, 1, dtype=torch.double))
    with pytest.raises(ValueError, match=rf"m must have shape \(3, {d}\)"):
        core.local_vjp(cache, torch.zeros(2, d, dtype=torch.double))
    with pytest.raises(ValueError, match=rf"e must have shape \(3, {d}, ...\), got \(3, {d + 1}"):
        core.jvp(cache, torch.zeros(3, d + 1, 2, dtype=torch.double))
    e = torch.zeros(3, d, 2, dtype=torch.double)
    with pytest.raises(ValueError, match="out must not share memory with e"):
        core.jvp(cache, e, out=e)
    with pytest.raises(ValueError, match=rf"out must match e: shape \(3, {d}, 2\)"):
        core.jvp(cache, e, out=torch.zeros(3, d, 3, dtype=torch.double))
    with pytest.raises(ValueError, match="out must be contiguous"):
        core.jvp(cache, e, out=torch.zeros(3, 2, d, dtype=torch.double).transpose(1, 2))
    other = make_core("lstm" if kind == "rnn" else "rnn", 2, 4).double()
    _, other_cache = other.step(x, other.initial_state(3))
    with pytest.raises(TypeError, match="cache must be the .*StepCache returned by"):
        core.jacobian(other_cache)
