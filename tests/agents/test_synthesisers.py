"""Synthesisers: ∂g/∂θ (dense and added in place into traces) against torch autograd, float64."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call
from torch.profiler import ProfilerActivity, profile

from agents.synthesisers import LinearSynthesiser, MLPSynthesiser, make_synthesiser

TOL = dict(rtol=1e-12, atol=1e-12)
KINDS = ["linear", "mlp-all", "mlp-output"]

sizes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(1, 6))


def build(kind, state_size, output_size, hidden_size, seed=0):
    """A float64 synthesiser with every parameter random (the zero output layer would make the
    hidden layer's Jacobian vanish)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "linear":
        synthesiser = make_synthesiser(state_size, output_size=output_size)
    else:
        mode = kind.removeprefix("mlp-")
        synthesiser = make_synthesiser(state_size, hidden_size, output_size, trace_parameters=mode)
    synthesiser = synthesiser.double()
    with torch.no_grad():
        for parameter in synthesiser.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.double))
    return synthesiser


def autograd_trace_jacobians(synthesiser, s):
    """Per trace parameter, (B, d_out, *θ.shape): ∂g(s)/∂θ by torch autograd."""
    named = dict(synthesiser.named_parameters())
    traced = synthesiser.trace_parameters()
    names = [next(n for n, p in named.items() if p is parameter) for parameter in traced]

    def predict(*values):
        return functional_call(synthesiser, {**named, **dict(zip(names, values, strict=True))}, s)

    return torch.autograd.functional.jacobian(predict, tuple(traced))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(size=sizes, scale=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_jacobians_dense_and_added_in_place_match_autograd(kind, size, scale, seed):
    batch, state_size, output_size, hidden_size = size
    synthesiser = build(kind, state_size, output_size, hidden_size, seed)
    s = torch.randn(batch, state_size, dtype=torch.double) * 2
    reference = autograd_trace_jacobians(synthesiser, s)

    dense = synthesiser.parameter_jacobians(s)
    assert [tuple(j.shape) for j in dense] == synthesiser.trace_shapes(batch)
    for mine, theirs in zip(dense, reference, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)

    traces = [torch.randn(shape, dtype=torch.double) for shape in synthesiser.trace_shapes(batch)]
    before = [trace.clone() for trace in traces]
    pointers = [trace.data_ptr() for trace in traces]
    synthesiser.add_parameter_jacobians_(traces, s, scale=scale)
    assert [trace.data_ptr() for trace in traces] == pointers
    for trace, old, theirs in zip(traces, before, reference, strict=True):
        torch.testing.assert_close(trace, old + scale * theirs, **TOL)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**16))
def test_parameter_vjp_matches_autograd(kind, size, seed):
    """sum_b c_b . dg(s_b)/dtheta per trace parameter, against autograd of g(s) . c."""
    batch, state_size, output_size, hidden_size = size
    synthesiser = build(kind, state_size, output_size, hidden_size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    s = 2 * torch.randn(batch, state_size, generator=generator, dtype=torch.double)
    cotangent = torch.randn(batch, synthesiser.output_size, generator=generator, dtype=torch.double)
    with torch.enable_grad():
        expected = torch.autograd.grad(synthesiser(s), synthesiser.trace_parameters(), cotangent)
    got = synthesiser.parameter_vjp(s, cotangent)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)
    buffer = torch.full((sum(p.numel() for p in expected),), float("nan"), dtype=torch.double)
    views = [
        block.view(p.shape)
        for block, p in zip(buffer.split([p.numel() for p in expected]), expected, strict=True)
    ]
    written = synthesiser.parameter_vjp(s, cotangent, out=views)
    assert all(w is v for w, v in zip(written, views, strict=True))
    for view, theirs in zip(views, expected, strict=True):
        torch.testing.assert_close(view, theirs, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_grouped_parameter_vjp_gives_each_groups_sum(kind):
    """s (G, N, d_in), c (G, N, d_out) -> (G, *theta.shape): group g's entry is autograd's
    sum over its N rows of c . dg(s)/dtheta (BP(lambda)'s replay of several tokens at once)."""
    synthesiser = build(kind, 4, 3, 5, seed=11)
    generator = torch.Generator().manual_seed(12)
    s = torch.randn(3, 5, 4, generator=generator, dtype=torch.double)
    cotangent = torch.randn(3, 5, 3, generator=generator, dtype=torch.double)
    got = synthesiser.parameter_vjp(s, cotangent)
    for group in range(3):
        with torch.enable_grad():
            expected = torch.autograd.grad(
                synthesiser(s[group]), synthesiser.trace_parameters(), cotangent[group]
            )
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.shape == (3, *theirs.shape)
            torch.testing.assert_close(mine[group], theirs, **TOL)
    with pytest.raises(ValueError, match=r"cotangent must be a tensor of shape \(3, 5, 3\)"):
        synthesiser.parameter_vjp(s, cotangent[:, :4])
    with pytest.raises(ValueError, match="out is for states without a group axis"):
        synthesiser.parameter_vjp(s, cotangent, out=[torch.zeros(1)])


@pytest.mark.parametrize(
    "synthesiser, linear",
    [
        (LinearSynthesiser(4), True),
        (MLPSynthesiser(4, 6, trace_parameters="output"), True),
        (MLPSynthesiser(4, 6, trace_parameters="all"), False),
    ],
)
def test_linear_in_trace_parameters_says_whether_dg_dtheta_moves_with_theta(synthesiser, linear):
    """The property BP(lambda)'s replay relies on to skip parameter copies, checked by moving
    theta and comparing autograd's dg/dtheta before and after."""
    synthesiser = synthesiser.double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in synthesiser.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    s = torch.randn(5, 4, dtype=torch.float64, generator=generator)
    before = autograd_trace_jacobians(synthesiser, s)
    with torch.no_grad():
        for p in synthesiser.trace_parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype, generator=generator))
    after = autograd_trace_jacobians(synthesiser, s)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert synthesiser.linear_in_trace_parameters is linear
    assert unchanged is linear


@pytest.mark.parametrize("kind", KINDS)
def test_jacobians_added_into_strided_trace_views(kind):
    """Traces that are column blocks of one shared buffer (agents.traces.allocate_traces) receive
    exactly the dense Jacobians (autograd), and the buffer's other columns stay untouched."""
    from agents.traces import allocate_traces

    synthesiser = build(kind, 4, 3, 5, seed=7)
    s = torch.randn(2, 4, dtype=torch.double)
    reference = autograd_trace_jacobians(synthesiser, s)
    buffer, views = allocate_traces(synthesiser.trace_shapes(2), dtype=torch.double)
    assert not views[0].is_contiguous()
    synthesiser.add_parameter_jacobians_(views, s, scale=-0.5)
    for view, theirs in zip(views, reference, strict=True):
        torch.testing.assert_close(view, -0.5 * theirs, **TOL)
    assert buffer.shape[2] == sum(math.prod(v.shape[2:]) for v in views)


def test_parameter_vjp_names_a_wrong_cotangent():
    synthesiser = build("linear", 4, 3, 5)
    s = torch.zeros(2, 4, dtype=torch.double)
    with pytest.raises(
        ValueError,
        match=r"cotangent must be a tensor of shape \(2, 3\).*"
        r"got \(2, 4\)",
    ):
        synthesiser.parameter_vjp(s, torch.zeros(2, 4, dtype=torch.double))
    with pytest.raises(ValueError, match=r"dtype torch.float64 .*got \(2, 3\), torch.float32"):
        synthesiser.parameter_vjp(s, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"out must be 2 tensors of shapes \[\(3, 4\), \(3,\)\]"):
        synthesiser.parameter_vjp(
            s, torch.zeros(2, 3, dtype=torch.double), out=[torch.zeros(3, 4, dtype=torch.double)]
        )


def test_linear_trace_add_allocates_nothing_trace_sized():
    """The linear synthesiser touches only the trace diagonals: no (B, d, d, d_in) temporary."""
    synthesiser = LinearSynthesiser(40).double()
    traces = [torch.zeros(shape, dtype=torch.double) for shape in synthesiser.trace_shapes(8)]
    s = torch.randn(8, 40, dtype=torch.double)
    synthesiser.add_parameter_jacobians_(traces, s)  # warm-up
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        synthesiser.add_parameter_jacobians_(traces, s, scale=0.5)
    allocated = sum(max(event.cpu_memory_usage, 0) for event in profiler.events())
    assert allocated < 1e-3 * traces[0].numel() * traces[0].element_size()


def test_linear_trace_memory_is_b_dout_squared_din_plus_one():
    synthesiser = make_synthesiser(6, output_size=4)
    shapes = synthesiser.trace_shapes(3)
    assert shapes == [(3, 4, 4, 6), (3, 4, 4)]
    assert sum(math.prod(shape) for shape in shapes) == 3 * 4**2 * (6 + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_output_layer_starts_at_zero_so_g_is_zero(kind):
    torch.manual_seed(0)
    if kind == "linear":
        synthesiser = make_synthesiser(5)
    else:
        synthesiser = make_synthesiser(5, 16, trace_parameters=kind.removeprefix("mlp-"))
    synthesiser = synthesiser.double()
    assert torch.count_nonzero(synthesiser.output.weight) == 0
    assert torch.count_nonzero(synthesiser.output.bias) == 0
    g = synthesiser(torch.randn(7, 5, dtype=torch.double))
    assert g.shape == (7, 5) and torch.count_nonzero(g) == 0
    if kind != "linear":  # the hidden layer is drawn like torch.nn.Linear: U(±1/√d_in)
        bound = 1 / math.sqrt(5)
        for parameter in (synthesiser.hidden.weight, synthesiser.hidden.bias):
            assert parameter.abs().max() <= bound and parameter.abs().max() > 0.5 * bound


def test_forward_is_the_stated_formula():
    synthesiser = build("mlp-all", 4, 3, 6)
    s = torch.randn(5, 4, dtype=torch.double)
    hidden, output = synthesiser.hidden, synthesiser.output
    expected = torch.relu(s @ hidden.weight.T + hidden.bias) @ output.weight.T + output.bias
    torch.testing.assert_close(synthesiser(s), expected, **TOL)
    linear = build("linear", 4, 3, None)
    torch.testing.assert_close(linear(s), s @ linear.output.weight.T + linear.output.bias, **TOL)


def test_trace_parameter_lists_and_output_mode_freezes_the_hidden_layer():
    linear = make_synthesiser(4)
    assert isinstance(linear, LinearSynthesiser)
    assert linear.trace_parameters()[0] is linear.output.weight
    assert linear.trace_parameters()[1] is linear.output.bias
    assert linear.trace_shapes(2) == [(2, 4, 4, 4), (2, 4, 4)]

    full = make_synthesiser(4, 8, output_size=3)
    assert isinstance(full, MLPSynthesiser)
    expected = [full.hidden.weight, full.hidden.bias, full.output.weight, full.output.bias]
    assert len(full.trace_parameters()) == 4
    assert all(a is b for a, b in zip(full.trace_parameters(), expected, strict=True))
    assert full.trace_shapes(2) == [(2, 3, 8, 4), (2, 3, 8), (2, 3, 3, 8), (2, 3, 3)]

    output_only = make_synthesiser(4, 8, trace_parameters="output")
    traced = output_only.trace_parameters()
    assert len(traced) == 2
    assert traced[0] is output_only.output.weight and traced[1] is output_only.output.bias
    assert not output_only.hidden.weight.requires_grad
    assert not output_only.hidden.bias.requires_grad
    assert all(p.requires_grad for p in traced)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: make_synthesiser(0), ValueError, "state_size must be an int >= 1, got 0"),
        (lambda: make_synthesiser(4, -1), ValueError, "hidden_size must be an int >= 1, got -1"),
        (lambda: make_synthesiser(4, 2.5), TypeError, r"hidden_size .* got 2.5 \(float\)"),
        (lambda: make_synthesiser(4, output_size=0), ValueError, "output_size .* got 0"),
        (
            lambda: make_synthesiser(4, 8, trace_parameters="hidden"),
            ValueError,
            r"trace_parameters must be one of \('all', 'output'\), got 'hidden'",
        ),
        (
            lambda: MLPSynthesiser(4, 8, trace_parameters="none"),
            ValueError,
            "trace_parameters .* got 'none'",
        ),
        (lambda: LinearSynthesiser(True), TypeError, "state_size must be an int >= 1, got True"),
    ],
)
def test_constructors_reject_bad_arguments(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_states_and_traces_are_named_in_the_error(kind):
    synthesiser = build(kind, 4, 3, 5)
    s = torch.randn(2, 4, dtype=torch.double)
    with pytest.raises(ValueError, match=r"s must have shape .*\(any, 4\), got \(2, 5\)"):
        synthesiser(torch.zeros(2, 5, dtype=torch.double))
    with pytest.raises(ValueError, match=r"s must have shape .*got \(4,\)"):
        synthesiser.parameter_jacobians(torch.zeros(4, dtype=torch.double))
    with pytest.raises(TypeError, match="s must have the parameters' dtype torch.float64"):
        synthesiser(s.float())

    traces = [torch.zeros(shape, dtype=torch.double) for shape in synthesiser.trace_shapes(2)]
    with pytest.raises(ValueError, match=f"traces must be a list or tuple of {len(traces)}"):
        synthesiser.add_parameter_jacobians_(traces[:-1], s)
    with pytest.raises(ValueError, match="traces\\[0\\] must have shape"):
        synthesiser.add_parameter_jacobians_([traces[0][:1], *traces[1:]], s)
    with pytest.raises(ValueError, match="traces\\[1\\] must have shape .* dtype torch.float64"):
        synthesiser.add_parameter_jacobians_([traces[0], traces[1].float(), *traces[2:]], s)
    with pytest.raises(TypeError, match="traces\\[0\\] must be a torch.Tensor"):
        synthesiser.add_parameter_jacobians_([traces[0].tolist(), *traces[1:]], s)
