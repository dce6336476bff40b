"""Property-based tests of the actions every env takes: any shape, dtype and value.

An action is the learner's prediction. The contract (README, "What every sequence task has in
common"): a floating array of exactly the action shape with finite entries is scored as is, in
float64 (reward = -loss on scored steps, 0 elsewhere); a non-floating dtype raises TypeError; a
wrong shape, NaN, inf or a ragged list raises ValueError naming the action; entries so large
that the loss overflows float64 (beyond ±1e150) raise ValueError instead of paying an infinite
reward. The loss is recomputed here by formulas of its own (scalar Python maths), not by
:mod:`bpl_envs.losses`.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.replay import SequenceReplayVectorEnv
from tests.fuzz import names_argument, reference_loss

HUGE = 1e150
"""Predictions up to this magnitude are always scored; beyond it the env may refuse them."""


def _replay(num_envs: int) -> SequenceReplayVectorEnv:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2 * num_envs, 3, 2))
    targets = np.eye(4)[rng.integers(0, 4, size=(2 * num_envs, 3))]
    return SequenceReplayVectorEnv(inputs, targets, "ce", [True, False, True], num_envs=num_envs)


ENVS = {  # name -> (loss, make(vector, B)); short sequences with scored and unscored steps
    "copy_repeat": (
        "bce",
        lambda vector, b: (
            gym.make_vec("bpl/CopyRepeat-v0", num_envs=b, bits=3)
            if vector
            else gym.make("bpl/CopyRepeat-v0", bits=3)
        ),
    ),
    "line_draw": (
        "mse",
        lambda vector, b: (
            gym.make_vec(
                "bpl/LineDraw-v0",
                num_envs=b,
                sequence_length=3,
                end_point=(0.5, -2.0),
                end_only=False,
            )
            if vector
            else gym.make(
                "bpl/LineDraw-v0", sequence_length=3, end_point=(0.5, -2.0), end_only=False
            )
        ),
    ),
    "digits": (
        "ce",
        lambda vector, b: (
            gym.make_vec("bpl/SequentialDigits-v0", num_envs=b)
            if vector
            else gym.make("bpl/SequentialDigits-v0")
        ),
    ),
    "mackey_glass": (
        "mse",
        lambda vector, b: (
            gym.make_vec("bpl/MackeyGlass-v0", num_envs=b, sequence_length=3)
            if vector
            else gym.make("bpl/MackeyGlass-v0", sequence_length=3)
        ),
    ),
    "replay": ("ce", lambda _vector, b: _replay(b)),
}

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
OTHER_DTYPES = [np.int64, np.int8, np.uint8, np.bool_, np.complex128]

values = st.one_of(
    st.floats(-60, 60),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 1e200, -1e308, 5e-324]),
)


@st.composite
def actions(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    """Arrays of the right shape or not, of any dtype; lists, scalars, ragged lists, junk."""
    wrong_shapes = [(), (shape[-1] + 1,), (*shape, 1), (1, *shape), (0,), shape[::-1]]
    array_shape = draw(st.one_of(st.just(shape), st.sampled_from(wrong_shapes)), label="shape")
    dtype = draw(st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES), label="dtype")
    if np.issubdtype(dtype, np.floating):
        elements = values.map(lambda v: _cast(v, dtype))
        array = draw(arrays(dtype, array_shape, elements=elements))
    else:
        array = draw(arrays(dtype, array_shape))
    return draw(
        st.one_of(
            st.just(array),
            st.just(array.tolist()),
            st.just([[0.5], [0.5, 0.5]]),
            st.sampled_from([None, "0.5", 0.5, 1, {"a": 1}]),
        ),
        label="action",
    )


def _cast(value: float, dtype: type) -> Any:
    with np.errstate(over="ignore"):
        return dtype(value)


def _expected_validity(action: Any, shape: tuple[int, ...]) -> tuple[type | None, np.ndarray]:
    """(the error type the action must raise, or None if it must be scored; it as an array)."""
    try:
        array = np.asarray(action)
    except ValueError:
        return ValueError, np.zeros(0)  # ragged
    if array.dtype.kind != "f":
        return TypeError, array
    if array.shape != shape or not np.isfinite(array).all():
        return ValueError, array
    return None, array


@pytest.mark.parametrize("name", sorted(ENVS))
@given(data=st.data())
def test_any_action_is_scored_exactly_or_refused_naming_it(name, data):
    kind, make = ENVS[name]
    vector = name == "replay" or data.draw(st.booleans(), label="vector")
    batch = data.draw(st.integers(1, 2), label="num_envs") if vector else 1
    env = make(vector, batch)
    env.reset(seed=0)
    output_size = (env.single_action_space if vector else env.action_space).shape[0]
    shape = (batch, output_size) if vector else (output_size,)
    length = env.task.sequence_length if vector else env.unwrapped.task.sequence_length
    for _ in range(data.draw(st.integers(0, length - 1), label="steps before")):
        env.step(np.zeros(shape, np.float32))
    action = data.draw(actions(shape))
    error_type, array = _expected_validity(action, shape)
    try:
        _, reward, _, _, info = env.step(action)
    except (TypeError, ValueError) as error:
        event(f"refused ({type(error).__name__})")
        huge = error_type is None and np.abs(array.astype(np.float64)).max() > HUGE
        assert error_type is not None or huge, f"valid action {action!r} refused: {error!r}"
        assert huge or isinstance(error, error_type), f"{action!r}: {error!r}"
        assert names_argument(error, ["action", "actions"]), f"{action!r}: {error!r}"
        return
    assert error_type is None, f"{action!r} accepted; it must raise {error_type.__name__}"
    event("scored" if np.asarray(info["scored"]).any() else "accepted, not scored")
    rows = array.astype(np.float64).reshape(batch, output_size)
    targets = np.asarray(info["target"], np.float64).reshape(batch, output_size)
    scored = np.asarray(info["scored"]).reshape(batch)
    expected = [
        -reference_loss(kind, rows[i], targets[i]) if scored[i] else 0.0 for i in range(batch)
    ]
    np.testing.assert_allclose(np.reshape(reward, batch), expected, rtol=1e-9, atol=1e-12)


@given(action=st.one_of(st.integers(-2, 2), st.booleans(), st.floats(-1, 1), st.none(), st.text()))
def test_random_walk_takes_only_its_single_action(action):
    walk = gym.make("bpl/RandomWalk-v0")
    walk.reset(seed=0)
    if isinstance(action, int) and action == 0:  # 0 (and False, a Python int 0)
        walk.step(action)
        return
    with pytest.raises(ValueError, match="action must be 0"):
        walk.step(action)


# ------------------------------------------------- regressions: what hypothesis found, kept


def test_regression_a_ragged_list_action_names_the_action():
    # was: ValueError "setting an array element with a sequence..." from numpy
    env = gym.make("bpl/LineDraw-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="^action must be an array of numbers of one shape"):
        env.step([[0.5], [0.5, 0.5]])


def test_regression_an_overflowing_loss_is_refused_not_paid_as_minus_inf():
    # was: reward -inf (and a RuntimeWarning) for an MSE of 1e200
    env = gym.make("bpl/LineDraw-v0", sequence_length=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action with entries up to 1e\+200 .* overflow"):
        env.step(np.array([1e200, 0.0]))
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([1e150, 0.0]))  # the bound of the README: still scored
    assert reward == pytest.approx(-(1e300 + 1.0) / 2, rel=1e-15)


def test_regression_replay_actions_are_checked_like_every_env():
    env = _replay(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be finite"):
        env.step(np.full((2, 4), np.nan))  # was: accepted, reward NaN
    with pytest.raises(TypeError, match="actions must be a floating array"):
        env.step(np.zeros((2, 4), np.int64))  # was: accepted as floats
