"""Property-based tests of every registered learner's constructor and of ``predict``'s inputs.

For every learner in :data:`agents.registry.LEARNERS`, hypothesis draws a few constructor
arguments at a time (tests/fuzz.py: in-range values as Python and NumPy numbers, and wrong
types, bools where numbers are expected, strings, None, negatives, NaN, inf) and checks the
contract against the oracle below: valid values build a learner that stores each as its plain
Python value and predicts; an invalid value raises TypeError or ValueError naming the argument.
Every constructor argument of every registered learner must have an entry in :data:`SPECS`
(a new learner or option fails :func:`test_every_argument_of_every_learner_is_fuzzed` until it is
described here). Failures hypothesis found are kept below as plain regression tests.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

import bpl_envs  # noqa: F401  (registers the ids)
from agents.experiments.hyperparameters import constructor_parameters
from agents.reference_conventions import REFERENCE_ITEMS
from agents.registry import LEARNERS
from agents.td_lambda import TRACES
from agents.unit_influence import UnitInfluenceLearner
from tests.fuzz import (
    INVALID,
    MAYBE,
    Arg,
    bool_arg,
    call_with_contract,
    choice_arg,
    floats,
    garbage,
    int_arg,
    ints,
    names_argument,
    optional_int_arg,
    optional_real_arg,
    real_arg,
    subsets_of,
)

CUDA = torch.cuda.is_available()


def _device_arg() -> Arg:
    def meaning(value: Any) -> Any:
        if isinstance(value, torch.device):
            value = str(value)
        if not isinstance(value, str):
            return INVALID
        if value in ("cpu", "cpu:0"):
            return value
        if CUDA and value in ("cuda", "cuda:0"):
            return value
        return INVALID

    likely = st.sampled_from(["cpu", torch.device("cpu")])
    unlikely = st.one_of(
        st.sampled_from(["cuda", "cuda:0", "cuda:99", "gpu", "CPU", "meta", "", "mps:0"]), garbage
    )
    return Arg(likely, unlikely, meaning)


def _seed_arg() -> Arg:
    def meaning(value: Any) -> Any:
        if value is None:
            return None
        valid = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        return int(value) if valid and 0 <= value < 2**64 else INVALID  # torch's limit

    likely = st.one_of(st.none(), ints(0, 10), st.integers(2**63, 2**64 - 1))
    unlikely = st.one_of(ints(-3, -1), st.integers(2**64, 2**70), floats(0, 3), st.booleans())
    return Arg(likely, unlikely, meaning)


def _features_arg() -> Arg:
    """TD(lambda)'s features on the 5-state walk (7 observations): None, a table, a map."""

    def feature_map(obs: Any) -> np.ndarray:
        return np.array([1.0, float(obs)])

    table = np.eye(7)

    def meaning(value: Any) -> Any:
        if value is None or value is feature_map:
            return value
        if isinstance(value, np.ndarray) and value.shape == (7, 7) and np.isfinite(value).all():
            return value
        return INVALID

    nan_table = np.eye(7)
    nan_table[0, 0] = np.nan
    likely = st.sampled_from([None, table, feature_map])
    unlikely = st.one_of(st.sampled_from([np.eye(3), nan_table, np.ones(7), "abc"]), garbage)
    return Arg(likely, unlikely, meaning)


def _conventions_arg() -> Arg:
    """``"exact"``, ``"reference"`` or a list/tuple of distinct item names. Which items apply
    depends on the learner, core, update mode and synth_update (agents.reference_conventions,
    tested there), so "reference" and item lists may be refused (naming conventions) or
    accepted."""

    def meaning(value: Any) -> Any:
        if isinstance(value, str):
            return "exact" if value == "exact" else MAYBE if value == "reference" else INVALID
        if isinstance(value, list | tuple):
            known = all(isinstance(item, str) and item in REFERENCE_ITEMS for item in value)
            return MAYBE if known and len(set(value)) == len(value) else INVALID
        return INVALID

    items = st.sampled_from(REFERENCE_ITEMS)
    likely = st.one_of(
        st.sampled_from(["exact", "reference"]), st.lists(items, max_size=2, unique=True)
    )
    unlikely = st.one_of(
        st.sampled_from(["Exact", "ref", ["nope"], ["readout_per_target_step"] * 2]), garbage
    )
    return Arg(likely, unlikely, meaning)


NON_NEGATIVE = real_arg(0.0, math.inf, draw=(0.0, 3.0))
FRACTION = real_arg(0.0, 1.0)
SPECS: dict[str, Arg] = {
    "core": choice_arg(["rnn", "lstm", "gru"]),  # core instances: tests/agents/test_cores*.py
    "hidden_size": int_arg(1, draw_up_to=4),
    "activation": choice_arg(["tanh", "identity"]),
    "num_layers": int_arg(1, draw_up_to=3),
    "recurrent_init": choice_arg(["uniform", "orthogonal"]),
    "spectral_radius": optional_real_arg(0.0, 1e6, closed=(False, True), draw=(0.1, 3.0)),
    "lam": FRACTION,
    "gamma": FRACTION,
    "sg_weight": NON_NEGATIVE,
    "lr_core": NON_NEGATIVE,
    "lr_readout": NON_NEGATIVE,
    "lr_synth": NON_NEGATIVE,
    "alpha": NON_NEGATIVE,
    "update": choice_arg(["sequence", "step"]),
    "synth_hidden": optional_int_arg(1, draw_up_to=4),
    "synth_trace_parameters": choice_arg(["all", "output"]),
    "clip_synth_update": bool_arg(),
    "synth_update": choice_arg(["trace", "replay", "forward_view"]),
    "replay_window": optional_int_arg(1, draw_up_to=4),
    "conventions": _conventions_arg(),
    "n": int_arg(1, draw_up_to=4),
    "n_envs": int_arg(1, draw_up_to=3),
    "dtype": choice_arg(["float32", "float64"]),
    "device": _device_arg(),
    "seed": _seed_arg(),
    "verbose": int_arg(0, 2),
    "trace": choice_arg(list(TRACES)),
    "features": _features_arg(),
    "epsilon": real_arg(0.0, math.inf, closed=(False, True), draw=(1e-9, 1e-3)),
}
"""The oracle of every constructor argument of the registered learners."""

NOT_FUZZED = {"self", "env"}
"""The env is what the learner learns from (tested by the env and set_env tests)."""

REQUIRED = {"td_lambda": {"lam": 0.5, "alpha": 0.1}}
"""Arguments a learner needs; given unless drawn."""


def _constructor_arguments(name: str) -> list[str]:
    """Every keyword the learner's constructor takes, ``**kwargs`` followed to its parents."""
    return [p for p in constructor_parameters(LEARNERS[name].cls) if p not in NOT_FUZZED]


def _fits_together(learner: str, meanings: dict[str, Any]) -> list[str]:
    """Constraints between arguments (names of those that clash)."""
    clashes = []
    if meanings.get("activation", "tanh") != "tanh" and meanings.get("core", "rnn") != "rnn":
        clashes += ["activation", "core"]
    if issubclass(LEARNERS[learner].cls, UnitInfluenceLearner):  # e-prop, SnAp-1: per-unit rows
        if meanings.get("core", "rnn") not in ("rnn", "lstm") or meanings.get("num_layers", 1) > 1:
            clashes += ["core", "num_layers"]
    if meanings.get("replay_window") is not None:
        if meanings.get("synth_update", "trace") != "replay":
            clashes += ["replay_window", "synth_update"]
    if learner == "bp_lambda" and meanings.get("synth_update", "trace") == "forward_view":
        if meanings.get("update", "sequence") != "sequence":
            clashes += ["synth_update", "update"]
        if meanings.get("clip_synth_update", True):
            clashes += ["synth_update", "clip_synth_update"]
    if learner == "td_lambda" and meanings.get("trace") == "replacing":
        if callable(meanings.get("features")):  # [1, s]: not binary; tables here are
            clashes += ["trace", "features"]
    return clashes


def _make(name: str, env: Any, **kwargs: Any):
    return LEARNERS[name].cls(env, **{**REQUIRED.get(name, {}), **kwargs})


def test_every_argument_of_every_learner_is_fuzzed():
    for name in LEARNERS:
        missing = sorted(set(_constructor_arguments(name)) - set(SPECS))
        assert not missing, f"learner {name!r}: add {missing} to SPECS (tests/agents/...)"


@pytest.mark.parametrize("name", sorted(LEARNERS))
@given(data=st.data())
def test_every_constructor_argument_is_checked_at_the_door(name, data):
    args = {arg: SPECS[arg] for arg in _constructor_arguments(name)}
    given_kwargs = data.draw(subsets_of(args), label="kwargs")
    td = name == "td_lambda"
    env = gym.make("bpl/RandomWalk-v0", n_states=5) if td else "bpl/LineDraw-v0"
    learner, meanings = call_with_contract(
        lambda **kwargs: _make(name, env, **kwargs),
        args,
        given_kwargs,
        cross=lambda meanings: _fits_together(name, meanings),
    )
    if learner is None:
        return
    stored = learner._hyperparameters()
    for argument, meaning in meanings.items():
        if argument == "features":
            continue  # a table or a callable: not plain data
        assert stored[argument] == meaning and type(stored[argument]) is type(meaning), (
            f"{argument}={given_kwargs[argument]!r} stored as {stored[argument]!r}"
        )
    if td:
        value, _ = learner.predict(np.int64(3))
    else:
        value, _ = learner.predict(np.zeros(learner.task.input_size, np.float32))
    assert np.isfinite(value).all()


def _observations(input_size: int) -> st.SearchStrategy[Any]:
    shapes = st.sampled_from([(input_size,), (2, input_size), (), (input_size + 1,), (1, 1, 2)])
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex64])
    arrays = st.tuples(shapes, dtypes, st.sampled_from([0.5, np.nan, np.inf, 1e39])).map(_filled)
    return st.one_of(arrays, st.sampled_from(["abc", None, [[0.5], [0.5, 0.5]], {"a": 1}]))


def _filled(spec: tuple[tuple[int, ...], type, float]) -> np.ndarray:
    shape, dtype, value = spec
    if dtype is np.complex64:
        return np.full(shape, 1j, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.full(shape, value).astype(dtype)


@pytest.mark.parametrize("name", sorted(set(LEARNERS) - {"td_lambda"}))
@given(data=st.data())
def test_predict_takes_any_observation_or_refuses_it_naming_it(name, data):
    learner = _make(name, bpl_envs.TaskSpec(3, 2, "mse", "all", 4), hidden_size=2, seed=0)
    observation = data.draw(_observations(3), label="observation")
    try:
        array = np.asarray(observation)
    except ValueError:
        array = None
    with np.errstate(over="ignore", invalid="ignore"):
        valid = (
            array is not None
            and array.dtype.kind in "biuf"
            and array.shape in ((3,), (2, 3))
            and np.isfinite(array.astype(np.float32)).all()
        )
    try:
        prediction, state = learner.predict(observation)
    except (TypeError, ValueError) as error:
        event("refused")
        assert not valid, f"valid observation {observation!r} refused: {error!r}"
        assert names_argument(error, ["observation"]), f"{observation!r}: {error!r}"
        return
    event("predicted")
    assert valid, f"{observation!r} accepted; it must be refused"
    assert prediction.shape == array.shape[:-1] + (2,) and np.isfinite(prediction).all()


# ------------------------------------------------- regressions: what hypothesis found, kept

SPEC = bpl_envs.TaskSpec(3, 2, "mse", "all", 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # was: ValueError "kind must be one of ('rnn', 'lstm'), got None" (not naming core)
        ({"core": None}, TypeError, r"^core must be one of \('rnn', 'lstm', 'gru'\) or a Rec"),
        ({"core": "RNN"}, ValueError, r"^core must be one of"),
        # was: ValueError "activation must be one of ('tanh', 'identity'), got 5" (a type)
        ({"activation": 5}, TypeError, r"^activation must be one of \['tanh', 'identity'\]"),
        # was: accepted, every weight of W_hh inf and every prediction NaN, silently
        ({"spectral_radius": 1e308}, ValueError, r"^spectral_radius must be .* <= 1e\+06"),
        # was: TypeError "hidden_size must be an int >= 1, got 2.0" (another argument's name)
        ({"synth_hidden": 2.0}, TypeError, r"^synth_hidden must be None or an int >= 1"),
        # was: ValueError "trace_parameters must be one of ..." (another name)
        ({"synth_trace_parameters": []}, TypeError, r"^synth_trace_parameters must be one of"),
        # was: TypeError "unhashable type: 'list'"
        ({"dtype": []}, TypeError, r"^dtype must be one of \['float32', 'float64'\]"),
        # was: RuntimeError "Expected one of cpu, cuda, ipu, xpu, ... device type" from torch
        ({"device": "gpu"}, ValueError, r"^device must be 'cpu', 'cuda'"),
        ({"device": 0}, TypeError, r"^device must be 'cpu', 'cuda'"),
        # was: accepted (True stored as verbose, 1.0 too)
        ({"verbose": True}, TypeError, r"^verbose must be an int in \[0, 2\], got True"),
        ({"verbose": 1.0}, TypeError, r"^verbose must be an int in \[0, 2\]"),
        # was: accepted with a TaskSpec (no env built), -1 stored
        ({"n_envs": -1}, ValueError, r"^n_envs must be an int >= 1, got -1"),
        # was: accepted, then gymnasium.error.Error at the first reset of learn()
        ({"seed": -1}, ValueError, r"^seed must be None or an int in \[0, 18446744073709551615\]"),
        # was: ValueError "Overflow when unpacking long long" from torch.manual_seed
        ({"seed": 2**70}, ValueError, r"^seed must be None or an int in \[0, "),
    ],
)
def test_regression_bad_learner_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        LEARNERS["bp_lambda"].cls(SPEC, **kwargs)


def test_regression_numpy_integers_are_stored_as_python_ints():
    learner = LEARNERS["bp_lambda"].cls("bpl/LineDraw-v0", n_envs=np.int8(2), verbose=np.int8(0))
    stored = learner._hyperparameters()
    assert type(stored["n_envs"]) is int and type(stored["verbose"]) is int  # were np.int8


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: device='cuda' is valid here")
def test_regression_cuda_without_cuda_says_so_before_anything_is_built():
    # was: AssertionError "Torch not compiled with CUDA enabled" from inside torch
    for name in LEARNERS:
        with pytest.raises(ValueError, match=r"device='cuda': CUDA is not available on this"):
            _make(name, "bpl/RandomWalk-v0" if name == "td_lambda" else SPEC, device="cuda")


def test_regression_td_lambda_device_and_features_name_themselves():
    walk = gym.make("bpl/RandomWalk-v0", n_states=5)
    with pytest.raises(ValueError, match="^device must be"):  # was: RuntimeError from torch
        _make("td_lambda", walk, device="x")
    with pytest.raises(TypeError, match="^features must hold real numbers"):
        _make("td_lambda", walk, features="abc")  # was: numpy "could not convert string"


def test_regression_predict_refuses_nan_and_text_observations():
    learner = LEARNERS["bp_lambda"].cls(SPEC, hidden_size=2)
    with pytest.raises(ValueError, match=r"^observation must be finite"):
        learner.predict(np.full(3, np.nan))  # was: a NaN prediction, silently
    with pytest.raises(TypeError, match="^observation must hold real numbers"):
        learner.predict("abc")  # was: numpy "could not convert string to float: 'abc'"
    with pytest.raises(ValueError, match=r"^state must be finite"):
        learner.predict(np.zeros(3), state=np.full((1, 2), np.inf))


def test_regression_per_unit_learners_name_num_layers_for_a_stacked_core():
    # was: "core must be one of ('rnn', 'lstm'), got a StackedCore" for num_layers=2 alone
    for name in ("eprop", "snap1"):
        with pytest.raises(ValueError, match=r"core must be one of .* with num_layers=1, got a St"):
            LEARNERS[name].cls(SPEC, num_layers=2)
