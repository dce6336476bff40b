"""Property-based tests of SequenceReplayVectorEnv's inputs: the user's own arrays.

Whatever arrays a user passes (ragged, empty, NaN, inf, too large for float32, complex,
strings, of any rank, scored masks of any dtype), the env either serves them exactly or
refuses them with a TypeError/ValueError naming the argument. The oracle here says what is
allowed: real numbers (bool, int, float), inputs and targets of shapes (N, T, n) with N, T, n >= 1
and the same N and T, finite in float32 (targets: on the scored steps, where they are read);
targets in [0, 1] for "bce" and probability vectors for "ce" on the scored steps; scored a bool
(or 0/1 int) array of shape (T,) or (N, T).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bpl_envs.replay import SequenceReplayVectorEnv
from tests.fuzz import names_argument

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64, np.str_]
SPECIAL = [math.nan, math.inf, -math.inf, 1e39, -1e300]


def _cast(value: float, dtype: type) -> Any:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(value).astype(dtype)[()]


@st.composite
def data_arrays(draw: st.DrawFn, shape: tuple[int, ...], kind: str) -> Any:
    """Arrays near ``shape`` (sometimes another rank or an empty dimension), of any dtype, with
    values that fit ``kind`` ("mse" any, "bce" bits, "ce" one-hot) or not; or ragged lists."""
    wrong = [shape[:2], (*shape, 1), (0, *shape[1:]), (*shape[:2], 0), ()]
    array_shape = draw(_mostly(st.just(shape), st.sampled_from(wrong)), label="shape")
    dtype = draw(_mostly(st.sampled_from(DTYPES[:5]), st.sampled_from(DTYPES[5:])), label="dtype")
    if dtype is np.str_:
        return np.full(array_shape, "a")
    if kind == "ce" and array_shape == shape and draw(st.booleans()):
        labels = draw(arrays(np.int64, shape[:2], elements=st.integers(0, shape[-1] - 1)))
        array = np.eye(shape[-1])[labels]
    elif kind == "bce" and draw(st.booleans()):
        array = draw(arrays(np.int64, array_shape, elements=st.integers(0, 1)))
    else:
        array = draw(arrays(np.float64, array_shape, elements=st.floats(-3, 3)))
        if array.size and draw(_mostly(st.just(False), st.just(True))):
            index = draw(st.integers(0, array.size - 1))
            array.reshape(-1)[index] = draw(st.sampled_from(SPECIAL))
    array = _cast(array, dtype) if array.size else array.astype(dtype)
    return draw(
        _mostly(st.just(array), st.sampled_from([array.tolist(), [[[0.0]], [[0.0], [1.0]]]]))
    )


def _mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` in seven draws of eight, else ``rare``."""
    return st.integers(0, 7).flatmap(lambda k: rare if k == 7 else usual)


def _data_meaning(value: Any, ndim: int, finite: bool = True) -> Any:
    """The array as float32 if it is allowed, else None (``finite=False``: NaN/inf entries are
    judged later, where they are read)."""
    try:
        array = np.asarray(value)
    except ValueError:
        return None  # ragged
    if array.dtype.kind not in "biuf" or array.ndim != ndim or array.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = array.astype(np.float32)
    return as_float32 if not finite or np.isfinite(as_float32).all() else None


@st.composite
def scored_masks(draw: st.DrawFn, n: int, t: int) -> Any:
    shape = draw(_mostly(st.sampled_from([(t,), (n, t)]), st.sampled_from([(t + 1,), (n + 1, t)])))
    kind = draw(_mostly(st.sampled_from(["bool", "01"]), st.sampled_from(["int", "float"])))
    if kind == "bool":
        return draw(arrays(np.bool_, shape))
    if kind == "01":
        return draw(arrays(np.int64, shape, elements=st.integers(0, 1)))
    if kind == "int":
        return draw(arrays(np.int64, shape, elements=st.integers(-1, 3)))
    return draw(arrays(np.float64, shape, elements=st.sampled_from([0.0, 0.5, 1.0, math.nan])))


def _scored_meaning(value: Any, n: int, t: int) -> np.ndarray | None:
    if value is None:
        return np.ones((n, t), bool)
    array = np.asarray(value)
    if array.dtype.kind == "b" or (array.dtype.kind in "iu" and np.isin(array, (0, 1)).all()):
        return (
            np.broadcast_to(array.astype(bool), (n, t)) if array.shape in ((t,), (n, t)) else None
        )
    return None


def _targets_fit(targets: np.ndarray, scored: np.ndarray, loss: str) -> bool:
    on_scored = targets[scored].astype(np.float64)
    if loss == "bce":
        return bool(((on_scored >= 0) & (on_scored <= 1)).all())
    if loss == "ce":
        return bool((on_scored >= 0).all() and (abs(on_scored.sum(-1) - 1) <= 1e-4).all())
    return True


@given(data=st.data())
def test_any_user_arrays_are_served_exactly_or_refused_naming_them(data):
    n, t = data.draw(st.integers(1, 3), label="N"), data.draw(st.integers(1, 3), label="T")
    loss = data.draw(
        _mostly(st.sampled_from(["mse", "bce", "ce"]), st.sampled_from(["MSE", None, 3, []])),
        label="loss",
    )
    kind = loss if loss in ("mse", "bce", "ce") else "mse"
    inputs = data.draw(data_arrays((n, t, 2), "mse"), label="inputs")
    targets = data.draw(data_arrays((n, t, 3), kind), label="targets")
    scored = data.draw(st.one_of(st.none(), scored_masks(n, t)), label="scored")
    num_envs = data.draw(
        _mostly(st.one_of(st.none(), st.integers(1, n)), st.sampled_from([-1, 0, 4, 1.0])),
        label="num_envs",
    )

    input_array, target_array = _data_meaning(inputs, 3), _data_meaning(targets, 3, finite=False)
    invalid = []
    if input_array is None:
        invalid.append("inputs")
    if target_array is None:
        invalid.append("targets")
    if not invalid and input_array.shape[:2] != target_array.shape[:2]:
        invalid += ["inputs", "targets"]
    if loss not in ("mse", "bce", "ce"):
        invalid.append("loss")
    mask = _scored_meaning(scored, n, t)
    if mask is None:
        invalid.append("scored")
    if num_envs is not None and (
        not isinstance(num_envs, int) or not 1 <= num_envs <= n or n % num_envs
    ):
        invalid.append("num_envs")
    checkable = target_array is not None and mask is not None and loss in ("mse", "bce", "ce")
    if (
        checkable
        and target_array.shape[:2] == (n, t)
        and not (np.isfinite(target_array[mask]).all() and _targets_fit(target_array, mask, loss))
    ):  # targets of unscored steps are never read: NaN there is allowed
        invalid.append("targets")
    try:
        env = SequenceReplayVectorEnv(inputs, targets, loss, scored, num_envs=num_envs)
    except (TypeError, ValueError) as error:
        event(f"refused: {sorted(set(invalid))}")
        assert invalid, f"valid arrays refused: {error!r}"
        assert names_argument(error, invalid), f"the error does not name {invalid}: {error!r}"
        return
    assert not invalid, f"accepted; {invalid} must be refused"
    event(f"served ({loss})")
    batch = n if num_envs is None else num_envs
    assert (env.task.input_size, env.task.output_size, env.task.sequence_length) == (2, 3, t)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, input_array[:batch, 0])
    _, reward, terminated, _, info = env.step(np.zeros((batch, 3)))
    np.testing.assert_array_equal(info["target"], target_array[:batch, 0])
    np.testing.assert_array_equal(info["scored"], mask[:batch, 0])
    assert np.isfinite(reward).all() and terminated.tolist() == [t == 1] * batch


# ------------------------------------------------- regressions: what hypothesis found, kept


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (
            np.full((2, 3, 1), np.nan),
            ValueError,
            r"inputs must be finite .* first at index \(0, 0, 0\)",
        ),
        ([[[1.0]], [[1.0], [2.0]]], ValueError, "inputs must be an array of numbers of one shape"),
        (np.zeros((0, 3, 1)), ValueError, r"inputs must not be empty, got shape \(0, 3, 1\)"),
        (np.zeros((2, 0, 1)), ValueError, r"inputs must not be empty"),
        (np.full((2, 3, 1), "a"), TypeError, "inputs must hold real numbers"),
        (np.full((2, 3, 1), 1j), TypeError, "inputs must hold real numbers"),
        (np.full((2, 3, 1), 1e39), ValueError, r"inputs must be finite \(in float32\)"),
        (np.zeros((2, 3)), ValueError, r"inputs must be a 3-D array, got shape \(2, 3\)"),
    ],
)
def test_regression_bad_inputs_are_refused_by_our_check(inputs, error, message):
    # was: numpy's "No low value can be equal to nan" (NaN), "inhomogeneous shape" (ragged),
    # "num_envs must be an int in [1, 0]" (empty), TaskSpec's "sequence_length must be a
    # positive int" (T = 0), "could not convert string to float", a silent cast of complex
    # numbers to their real part and of 1e39 to inf
    with pytest.raises(error, match=message):
        SequenceReplayVectorEnv(inputs, np.zeros((2, 3, 1)), "mse")


def test_regression_targets_that_do_not_fit_the_loss_are_refused():
    inputs = np.zeros((2, 3, 1))
    message = r"targets on the scored steps must be probability vectors .* summing to 2"
    with pytest.raises(ValueError, match=message):
        SequenceReplayVectorEnv(inputs, np.full((2, 3, 2), 1.0), "ce")  # was: a wrong gradient
    with pytest.raises(ValueError, match=r"targets on the scored steps must lie in \[0, 1\]"):
        SequenceReplayVectorEnv(inputs, np.full((2, 3, 2), 2.0), "bce")
    unscored_zeros = np.zeros((2, 3, 2))
    unscored_zeros[:, -1, 0] = 1.0  # a label on the last (only scored) step
    SequenceReplayVectorEnv(inputs, unscored_zeros, "ce", [False, False, True])


def test_regression_scored_loss_and_options_are_checked():
    inputs, targets = np.zeros((2, 3, 1)), np.zeros((2, 3, 1))
    with pytest.raises(TypeError, match="scored must hold bools"):
        SequenceReplayVectorEnv(inputs, targets, "mse", [0.5, 2.0, np.nan])  # was: all True
    with pytest.raises(TypeError, match="loss must be one of"):
        SequenceReplayVectorEnv(inputs, targets, [])  # was: TypeError "unhashable type: 'list'"
    env = SequenceReplayVectorEnv(inputs, targets, "mse", [1, 0, 1])  # 0/1 ints are bools
    env.reset()
    with pytest.raises(TypeError, match="options must be a dict or None"):
        env.reset(options=[])  # was: accepted
