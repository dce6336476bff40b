"""Stacked cores (num_layers = L): forward against torch.nn.RNN / LSTM / GRU with the same L and
weights, every derivative product against autograd, in float64."""

import pytest
import torch

from agents.cores import GRUCore, LSTMCore, RNNCore, StackedCore, make_core
from tests.agents.core_reference import TOL, check_derivatives, random_inputs, randomise_core

TORCH_LAYERS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
STACKS = [(kind, layers) for kind in ("rnn", "lstm", "gru") for layers in (2, 3)]
STACK_IDS = [f"{kind}-{layers}" for kind, layers in STACKS]


def stacked(kind, layers, input_size=3, hidden_size=4, seed=0):
    core = make_core(kind, input_size, hidden_size, num_layers=layers).double()
    randomise_core(core, seed, scale=0.8)
    return core


def torch_twin(core):
    """torch.nn.{RNN,LSTM,GRU}(num_layers=L) holding the stack's weights (a single bias as
    b_ih = b, b_hh = 0)."""
    net = TORCH_LAYERS[core.kind](core.input_size, core.hidden_size, num_layers=core.num_layers)
    net.double()
    with torch.no_grad():
        for index, layer in enumerate(core.layers):
            getattr(net, f"weight_ih_l{index}").copy_(layer.weight_ih)
            getattr(net, f"weight_hh_l{index}").copy_(layer.weight_hh)
            if isinstance(layer, GRUCore):
                getattr(net, f"bias_ih_l{index}").copy_(layer.bias_ih)
                getattr(net, f"bias_hh_l{index}").copy_(layer.bias_hh)
            else:
                getattr(net, f"bias_ih_l{index}").copy_(layer.bias)
                getattr(net, f"bias_hh_l{index}").zero_()
    return net


def split_state(core, s):
    """Our (B, d) state as torch's initial state: h (L, B, H), or (h, c) for the LSTM."""
    blocks = [s[:, columns] for columns in core.layer_columns]
    H = core.hidden_size
    h = torch.stack([block[:, :H] for block in blocks])
    if core.kind == "lstm":
        return h, torch.stack([block[:, H:] for block in blocks])
    return h


@pytest.mark.parametrize("kind, layers", STACKS, ids=STACK_IDS)
def test_forward_matches_the_stacked_torch_module(kind, layers):
    core = stacked(kind, layers)
    x, s = random_inputs(core, 2, seed=1)
    net = torch_twin(core)
    xs = torch.randn(6, 2, 3, dtype=torch.double)
    outputs, final = net(xs, split_state(core, s))
    state = s
    for t in range(6):
        state = core(xs[t], state)
        torch.testing.assert_close(core.hidden(state), outputs[t], **TOL)
    finals = final if kind == "lstm" else (final,)
    expected = [torch.cat([part[index] for part in finals], dim=1) for index in range(layers)]
    torch.testing.assert_close(state, torch.cat(expected, dim=1), **TOL)


@pytest.mark.parametrize("kind, layers", STACKS, ids=STACK_IDS)
def test_derivatives_match_autograd_and_the_jacobian_is_block_lower_triangular(kind, layers):
    core = stacked(kind, layers, seed=layers)
    x, s = random_inputs(core, 3, seed=5)
    jacobian = check_derivatives(core, x, s, seed=7)
    for row, rows in enumerate(core.layer_columns):
        for column, columns in enumerate(core.layer_columns):
            block = jacobian[:, rows, columns]
            if column > row:  # a layer's new state does not depend on the layers above it
                assert torch.count_nonzero(block) == 0
            else:
                assert block.abs().max() > 1e-3


def test_state_layout_and_parameter_order():
    core = make_core("lstm", 3, 4, num_layers=2)
    assert (core.state_size, core.hidden_size, core.num_layers, core.kind) == (16, 4, 2, "lstm")
    assert core.layer_columns == [slice(0, 8), slice(8, 16)]
    assert core.hidden_columns == slice(8, 12)  # h of the top layer
    assert [name for name, _ in core.named_parameters()] == [
        "layers.0.weight_ih",
        "layers.0.weight_hh",
        "layers.0.bias",
        "layers.1.weight_ih",
        "layers.1.weight_hh",
        "layers.1.bias",
    ]
    assert core.layers[1].input_size == 4
    s = torch.arange(32.0).view(2, 16)
    assert torch.equal(core.hidden(s), s[:, 8:12])
    gradient = core.state_gradient(torch.ones(2, 4))
    assert torch.equal(gradient[:, 8:12], torch.ones(2, 4)) and gradient.sum() == 8


def test_one_layer_is_the_plain_core():
    assert type(make_core("gru", 3, 4, num_layers=1)) is GRUCore


def test_bad_stacks_are_refused():
    with pytest.raises(ValueError, match="num_layers must be an int >= 1, got 0"):
        make_core("rnn", 3, 4, num_layers=0)
    with pytest.raises(TypeError, match="num_layers must be an int >= 1, got 2.0"):
        make_core("rnn", 3, 4, num_layers=2.0)
    with pytest.raises(ValueError, match="layers must be a non-empty sequence"):
        StackedCore([])
    with pytest.raises(TypeError, match=r"one class \(RNNCore\), got LSTMCore at index 1"):
        StackedCore([RNNCore(3, 4), LSTMCore(4, 4)])
    with pytest.raises(ValueError, match=r"layer 1 has input_size=3 .*hidden_size=4"):
        StackedCore([RNNCore(3, 4), RNNCore(3, 4)])
