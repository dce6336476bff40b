"""FunctionalCore: any torch cell as a core. Its torch.func derivatives against autograd, every
learner's updates against the analytic cores with copied weights (float64, 1e-10), a user's own
cell trained end to end, checkpoints, and the errors for cells it cannot wrap."""

import copy

import numpy as np
import pytest
import torch

from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.cores import FunctionalCore, GRUCore, RNNCore, make_core
from agents.evaluation import evaluate_sequences
from agents.no_sg import NoSG
from agents.rtrl import RTRL
from tests.agents.autograd_reference import (
    LeakyRNNCell,
    assert_all_close,
    make_data,
    randomise,
    replay_env,
)
from tests.agents.core_reference import check_derivatives, random_inputs, randomise_core

B, T, N_IN, N_OUT, H = 3, 6, 3, 2, 4


class JointLSTMCell(torch.nn.Module):
    """torch.nn.LSTMCell on one joint state tensor [h, c] (what FunctionalCore needs)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.lstm = torch.nn.LSTMCell(input_size, hidden_size)

    def forward(self, x, s):
        h, c = self.lstm(x, s.chunk(2, dim=1))
        return torch.cat((h, c), dim=1)


CELLS = {
    "rnn-cell": lambda: torch.nn.RNNCell(N_IN, H),
    "gru-cell": lambda: torch.nn.GRUCell(N_IN, H),
    "leaky": lambda: LeakyRNNCell(N_IN, H),
    "joint-lstm": lambda: FunctionalCore(
        JointLSTMCell(N_IN, H), input_size=N_IN, state_size=2 * H, hidden_size=H
    ),
}


def functional(name):
    made = CELLS[name]()
    return made if isinstance(made, FunctionalCore) else FunctionalCore(made)


# --------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("batch", [1, 3])
def test_derivatives_match_autograd(name, batch):
    core = functional(name).double()
    randomise_core(core, seed=batch)
    x, s = random_inputs(core, batch, seed=4)
    check_derivatives(core, x, s, seed=9)


def test_parameters_and_sizes_are_the_cells():
    cell = torch.nn.GRUCell(N_IN, H)
    core = FunctionalCore(cell)
    assert (core.input_size, core.state_size, core.hidden_size) == (N_IN, H, H)
    assert list(core.parameters()) == list(cell.parameters())
    joint = functional("joint-lstm")
    assert (joint.state_size, joint.hidden_size, joint.hidden_columns) == (2 * H, H, slice(0, H))


# ------------------------------------------------- learners: the same updates as analytic cores
LEARNERS = {
    "bp_lambda_trace": (BPLambda, {"lam": 0.7, "gamma": 0.9, "lr_synth": 1e-2}),
    "bp_lambda_forward_view": (
        BPLambda,
        {
            "lam": 0.7,
            "gamma": 0.9,
            "lr_synth": 1e-2,
            "synth_update": "forward_view",
            "clip_synth_update": False,
        },
    ),
    "bptt": (BPTT, {}),
    "tbptt": (TruncatedBPTT, {"n": 2}),
    "dni": (DNI, {"n": 2, "gamma": 0.9, "lr_synth": 1e-2}),
    "nosg": (NoSG, {}),
    "rtrl": (RTRL, {}),
}
ANALYTIC = {"rnn-cell": "rnn", "gru-cell": "gru", "joint-lstm": "lstm"}


def copy_weights(analytic, functional_core):
    """The analytic core's weights into the wrapped torch cell (a single bias as b_ih = b and
    b_hh = 0)."""
    cell = functional_core.cell
    cell = getattr(cell, "lstm", cell)
    with torch.no_grad():
        cell.weight_ih.copy_(analytic.weight_ih)
        cell.weight_hh.copy_(analytic.weight_hh)
        if isinstance(analytic, GRUCore):
            cell.bias_ih.copy_(analytic.bias_ih)
            cell.bias_hh.copy_(analytic.bias_hh)
        else:
            cell.bias_ih.copy_(analytic.bias)
            cell.bias_hh.zero_()


def twin_learners(learner, name, n_batches=1, **extra):
    """A learner on the analytic core and one on the wrapped torch cell, with equal weights."""
    cls, kwargs = LEARNERS[learner]
    data = make_data("ce", B, T, N_IN, N_OUT, seed=3, n_batches=n_batches)
    kwargs = {
        **kwargs,
        "hidden_size": H,
        "dtype": "float64",
        "seed": 0,
        "lr_core": 1e-2,
        "lr_readout": 1e-2,
        **extra,
    }
    analytic = cls(replay_env("ce", *data, B), core=ANALYTIC[name], **kwargs)
    randomise(analytic.core, seed=1, scale=0.8)
    randomise(analytic.readout, seed=2)
    wrapped = cls(replay_env("ce", *data, B), core=functional(name), **kwargs)
    copy_weights(analytic.core, wrapped.core)
    for module in ("readout", "synthesiser"):
        if hasattr(analytic, module):
            randomise(getattr(analytic, module), seed=5)
            getattr(wrapped, module).load_state_dict(getattr(analytic, module).state_dict())
    return analytic, wrapped


def analytic_view(wrapped_grads, analytic):
    """The wrapped cell's core gradients in the analytic core's parameters: a single bias gets
    the gradient of b_ih (which equals b_hh's)."""
    if isinstance(analytic, GRUCore):
        return wrapped_grads
    weight_ih, weight_hh, bias_ih, bias_hh = wrapped_grads
    torch.testing.assert_close(bias_ih, bias_hh, rtol=1e-12, atol=1e-14)
    return [weight_ih, weight_hh, bias_ih]


@pytest.mark.parametrize("name", ["rnn-cell", "gru-cell", "joint-lstm"])
@pytest.mark.parametrize("learner", LEARNERS)
def test_a_wrapped_torch_cell_gets_the_analytic_cores_update(learner, name):
    analytic, wrapped = twin_learners(learner, name)
    analytic.learn(episodes=1)
    wrapped.learn(episodes=1)
    want = [p.grad for p in analytic.core.parameters()]
    got = analytic_view([p.grad for p in wrapped.core.parameters()], analytic.core)
    assert_all_close(got, want)
    assert all(g.abs().max() > 1e-5 for g in want)  # not vacuous
    for module in ("readout", "synthesiser"):
        if hasattr(analytic, module):
            assert_all_close(
                [p.grad for p in getattr(wrapped, module).parameters()],
                [p.grad for p in getattr(analytic, module).parameters()],
            )


@pytest.mark.parametrize("learner", ["bp_lambda_trace", "bptt", "rtrl"])
def test_a_wrapped_gru_cell_learns_the_same_parameters_over_several_batches(learner):
    analytic, wrapped = twin_learners(learner, "gru-cell", n_batches=2)
    analytic.learn(episodes=3)
    wrapped.learn(episodes=3)
    assert_all_close(list(wrapped.core.parameters()), list(analytic.core.parameters()))
    assert_all_close(list(wrapped.readout.parameters()), list(analytic.readout.parameters()))


# --------------------------------------------------------------------------- a user's cell
def memory_task(n_sequences=16, steps=5, seed=0):
    """Recall the first token's first N_OUT channels at the last step (scored only there)."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n_sequences, steps, N_IN)).astype(np.float32)
    targets = np.zeros((n_sequences, steps, N_OUT), np.float32)
    targets[:, -1] = inputs[:, 0, :N_OUT]
    scored = np.zeros(steps, bool)
    scored[-1] = True
    return inputs, targets, scored


@pytest.mark.parametrize("cls", [BPLambda, BPTT])
def test_a_user_defined_cell_trains_end_to_end(cls):
    inputs, targets, scored = memory_task()
    env = replay_env("mse", inputs, targets, scored, 8)
    cell = LeakyRNNCell(N_IN, 16)
    learner = cls(
        env, core=FunctionalCore(cell), hidden_size=16, lr_core=3e-2, lr_readout=3e-2, seed=0
    )
    before = evaluate_sequences(learner, inputs, targets, scored)["loss"]
    learner.learn(episodes=60)
    after = evaluate_sequences(learner, inputs, targets, scored)["loss"]
    assert after < 0.3 * before
    assert cell.input.weight.dtype == torch.float32  # the learner trained a copy:
    assert learner.core.cell is not cell  # the user's module is untouched
    assert not torch.equal(learner.core.cell.recurrent.weight, cell.recurrent.weight)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoints_hold_the_cells_parameters_and_ask_for_the_cell_again(tmp_path):
    data = make_data("mse", B, T, N_IN, N_OUT, seed=1, n_batches=2)
    kwargs = {"hidden_size": H, "lr_synth": 1e-2, "seed": 0}
    whole = BPLambda(
        replay_env("mse", *data, B), core=FunctionalCore(LeakyRNNCell(N_IN, H)), **kwargs
    )
    halves = copy.deepcopy(whole)
    whole.learn(episodes=2)
    halves.learn(episodes=1).save(tmp_path / "half")
    saved = torch.load(tmp_path / "half.pt", weights_only=True)["hyperparameters"]["core"]
    assert saved == "FunctionalCore(tests.agents.autograd_reference.LeakyRNNCell)"

    with pytest.raises(
        ValueError,
        match=r"core is a FunctionalCore\(tests.agents.autograd_ref"
        r"erence.LeakyRNNCell\) instance.*pass one again",
    ):
        BPLambda.load(tmp_path / "half", env=replay_env("mse", *data, B))
    with pytest.raises(ValueError, match=r"got core=FunctionalCore\(torch.nn.modules.rnn.GRU"):
        BPLambda.load(
            tmp_path / "half",
            env=replay_env("mse", *data, B),
            core=FunctionalCore(torch.nn.GRUCell(N_IN, H)),
        )
    with pytest.raises(ValueError, match="got core=gru"):
        BPLambda.load(tmp_path / "half", env=replay_env("mse", *data, B), core="gru")

    loaded = BPLambda.load(
        tmp_path / "half", env=halves.env, core=FunctionalCore(LeakyRNNCell(N_IN, H))
    )
    for a, b in zip(loaded.core.parameters(), halves.core.parameters(), strict=True):
        assert torch.equal(a, b)
    loaded.learn(episodes=1, reset_num_timesteps=False)
    for name in ("core", "readout", "synthesiser"):
        for a, b in zip(
            getattr(loaded, name).parameters(), getattr(whole, name).parameters(), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_built_in_core_instance_is_saved_by_name(tmp_path):
    env = replay_env("mse", *make_data("mse", B, T, N_IN, N_OUT), B)
    core = make_core("gru", N_IN, 6, num_layers=2, recurrent_init="orthogonal")
    learner = BPTT(env, core=core, seed=0)
    assert (learner.core_kind, learner.hidden_size, learner.num_layers) == ("gru", 6, 2)
    learner.learn(episodes=1).save(tmp_path / "gru")
    loaded = BPTT.load(tmp_path / "gru", env=env)  # rebuilt by name, no core needed
    assert loaded.recurrent_init == "orthogonal"
    for a, b in zip(loaded.core.parameters(), learner.core.parameters(), strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- bad input
class WrongShapeCell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.input_size, self.hidden_size = N_IN, H
        self.linear = torch.nn.Linear(N_IN + H, H + 1)

    def forward(self, x, s):
        return self.linear(torch.cat((x, s), dim=1))


class TupleCell(LeakyRNNCell):
    def __init__(self):
        super().__init__(N_IN, H)

    def forward(self, x, s):
        return super().forward(x, s), s


class NoParameterCell(torch.nn.Module):
    def forward(self, _x, s):
        return s


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: FunctionalCore(lambda _x, s: s),
            TypeError,
            "cell must be a torch.nn.Module computing cell\\(x, s\\) -> s', got function",
        ),
        (
            lambda: FunctionalCore(WrongShapeCell()),
            ValueError,
            r"must return the new state shaped like s \(2, 4\) \(state_size = 4\), got \(2, 5\)",
        ),
        (
            lambda: FunctionalCore(torch.nn.LSTMCell(N_IN, H)),
            ValueError,
            r"cell\(x, s\) failed .*a cell with a tuple state, such as torch.nn.LSTMCell, needs "
            "a wrapper",
        ),
        (
            lambda: FunctionalCore(TupleCell()),
            TypeError,
            "must return the new state as one tensor shaped like s, got tuple",
        ),
        (
            lambda: FunctionalCore(NoParameterCell(), input_size=3, state_size=4),
            ValueError,
            "cell must have floating-point parameters to learn, got NoParameterCell with 0",
        ),
        (
            lambda: FunctionalCore(LeakyRNNCell(N_IN, H), hidden_size=5),
            ValueError,
            "hidden_size must be at most state_size = 4, got 5",
        ),
        (
            lambda: FunctionalCore(NoParameterCell()),
            ValueError,
            "input_size is needed: NoParameterCell has no int attribute 'input_size'",
        ),
        (
            lambda: FunctionalCore(torch.nn.GRUCell(N_IN, H), input_size=N_IN + 1),
            ValueError,
            r"cell\(x, s\) failed on x of shape \(2, 4\) and s of shape \(2, 4\): RuntimeError",
        ),
        (
            lambda: FunctionalCore(torch.nn.GRUCell(N_IN, H), state_size=0),
            ValueError,
            "state_size must be an int >= 1, got 0",
        ),
    ],
)
def test_cells_it_cannot_wrap_are_refused_when_wrapped(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"core": FunctionalCore(torch.nn.GRUCell(N_IN + 1, H))},
            ValueError,
            "core reads input_size=4 inputs but the task's tokens have 3",
        ),
        (
            {"core": FunctionalCore(torch.nn.GRUCell(N_IN, H)), "hidden_size": 8},
            ValueError,
            r"hidden_size=8 conflicts with the core instance given .*leave hidden_size at its "
            "default 30",
        ),
        (
            {"core": FunctionalCore(torch.nn.GRUCell(N_IN, H)), "num_layers": 2},
            ValueError,
            "num_layers=2 conflicts with the core instance given",
        ),
        (
            {"core": RNNCore(N_IN, H), "recurrent_init": "orthogonal"},
            ValueError,
            "recurrent_init='orthogonal' conflicts with the core instance given",
        ),
    ],
)
def test_core_instances_that_do_not_fit_are_refused_before_training(kwargs, error, message):
    env = replay_env("mse", *make_data("mse", B, T, N_IN, N_OUT), B)
    with pytest.raises(error, match=message):
        BPLambda(env, **kwargs)


def test_an_instance_may_repeat_its_own_settings():
    env = replay_env("mse", *make_data("mse", B, T, N_IN, N_OUT), B)
    learner = BPTT(env, core=RNNCore(N_IN, H, "identity"), hidden_size=H, activation="identity")
    assert (learner.hidden_size, learner.activation, learner.core_kind) == (H, "identity", "rnn")
