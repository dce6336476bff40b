"""bpl_envs/checks.py: the one home of argument validation, for the envs and the learners.

Each check returns a plain Python value or raises TypeError (wrong type) / ValueError (wrong
value), the message naming the argument, the value and what is allowed.
"""

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpl_envs.checks import (
    check_bool,
    check_finite,
    check_fraction,
    check_in_closed_interval,
    check_in_open_interval,
    check_int,
    check_non_negative,
    check_open_fraction,
    check_optional_int,
    check_positive,
)

FLOAT_CHECKS = [
    check_finite,
    check_fraction,
    check_non_negative,
    check_open_fraction,
    check_positive,
    lambda name, value: check_in_closed_interval(name, value, -1.0, 2.0),
    lambda name, value: check_in_open_interval(name, value, -1.0, 2.0),
]
NOT_NUMBERS = ["0.5", None, [0.5], True, False, np.bool_(True), 1j, np.array([0.5])]


@pytest.mark.parametrize("check", FLOAT_CHECKS)
@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), np.float16(0.5)])
def test_float_checks_accept_python_and_numpy_floats_and_return_a_python_float(check, value):
    result = check("x", value)
    assert result == 0.5 and type(result) is float


@pytest.mark.parametrize("check", [c for c in FLOAT_CHECKS if c is not check_open_fraction])
@pytest.mark.parametrize("value", [1, np.int64(1), np.int8(1), np.uint32(1)], ids=repr)
def test_float_checks_accept_python_and_numpy_integers(check, value):
    result = check("x", value)
    assert result == 1.0 and type(result) is float


@pytest.mark.parametrize("check", FLOAT_CHECKS)
@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_float_checks_refuse_non_numbers_and_bools_with_a_type_error(check, value):
    with pytest.raises(TypeError, match=r"^lam must be .*, got .* \(\w+\)$") as error:
        check("lam", value)
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("check", FLOAT_CHECKS)
@pytest.mark.parametrize("value", [math.nan, np.float32(math.nan)], ids=["nan", "np.float32 nan"])
def test_nan_is_a_value_error_for_every_float_check(check, value):
    with pytest.raises(ValueError, match=r"^gamma must be .*, got (np.float32\()?nan\)?$"):
        check("gamma", value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, np.float64(np.inf)])
@pytest.mark.parametrize("check", [check_finite, check_non_negative, check_positive])
def test_infinities_are_refused_where_the_range_is_unbounded(check, value):
    with pytest.raises(ValueError, match=r"must be a finite number"):
        check("alpha", value)


def test_closed_and_open_intervals_differ_exactly_at_their_ends():
    for end in (0, 0.0, 1, 1.0, np.float32(1.0)):
        assert check_fraction("lam", end) == float(end)
        message = rf"^p must be a number in \(0, 1\), got {re.escape(repr(end))}$"
        with pytest.raises(ValueError, match=message):
            check_open_fraction("p", end)
    assert check_in_closed_interval("x", -2.5, -2.5, 3.0) == -2.5
    assert check_in_closed_interval("x", 3.0, -2.5, 3.0) == 3.0
    for end in (-2.5, 3.0):
        with pytest.raises(ValueError, match=r"x must be a number in \(-2.5, 3\)"):
            check_in_open_interval("x", end, -2.5, 3.0)
    just_inside = np.nextafter(0.0, 1.0)
    assert check_open_fraction("p", just_inside) == just_inside
    assert check_open_fraction("p", np.nextafter(1.0, 0.0)) < 1.0
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\], got 1.5"):
        check_fraction("lam", 1.5)
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\], got -1e-09"):
        check_fraction("lam", -1e-9)


def test_non_negative_and_positive_differ_at_zero():
    assert check_non_negative("lr", 0) == 0.0
    assert check_non_negative("lr", -0.0) == 0.0
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0$"):
        check_positive("lr", 0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number >= 0, got -0.1$"):
        check_non_negative("lr", -0.1)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_interval_checks_agree_with_the_comparisons_they_name(value):
    checks = {
        check_fraction: 0.0 <= value <= 1.0,
        check_open_fraction: 0.0 < value < 1.0,
        check_non_negative: value >= 0.0,
        check_positive: value > 0.0,
        check_finite: True,
    }
    for check, allowed in checks.items():
        if allowed:
            assert check("v", value) == value
        else:
            with pytest.raises(ValueError, match=r"^v must be "):
                check("v", value)


def test_check_int_accepts_python_and_numpy_integers_and_returns_a_python_int():
    for value in (3, np.int64(3), np.int8(3), np.uint16(3)):
        result = check_int("n", value, minimum=1)
        assert result == 3 and type(result) is int


@pytest.mark.parametrize(
    "value", [2.0, np.float32(2.0), "2", None, True, np.bool_(False), [2]], ids=repr
)
def test_check_int_refuses_floats_strings_and_bools_with_a_type_error(value):
    with pytest.raises(TypeError, match=r"^n must be an int >= 1, got .* \(\w+\)$"):
        check_int("n", value, minimum=1)


def test_check_int_ranges_include_both_ends():
    assert check_int("k", 0, minimum=0, maximum=9) == 0
    assert check_int("k", 9, minimum=0, maximum=9) == 9
    assert check_int("k", -(10**12)) == -(10**12)
    assert check_int("k", 5, maximum=5) == 5
    with pytest.raises(ValueError, match=r"^k must be an int in \[0, 9\], got 10$"):
        check_int("k", 10, minimum=0, maximum=9)
    with pytest.raises(ValueError, match=r"^k must be an int <= 5, got np.int64\(6\)$"):
        check_int("k", np.int64(6), maximum=5)
    with pytest.raises(ValueError, match=r"^k must be an int >= 1, got 0$"):
        check_int("k", 0, minimum=1)


def test_check_optional_int_allows_none_and_says_so():
    assert check_optional_int("seed", None) is None
    assert check_optional_int("seed", np.int32(7), minimum=0) == 7
    with pytest.raises(TypeError, match=r"^seed must be None or an int >= 0, got '7' \(str\)$"):
        check_optional_int("seed", "7", minimum=0)
    with pytest.raises(TypeError, match=r"^seed must be None or an int, got True \(bool\)$"):
        check_optional_int("seed", True)
    with pytest.raises(ValueError, match=r"^seed must be an int >= 0, got -1$"):
        check_optional_int("seed", -1, minimum=0)


def test_check_bool_accepts_python_and_numpy_bools_only():
    assert check_bool("stream", True) is True
    assert check_bool("stream", np.bool_(False)) is False
    for value in (1, 0, "True", None, 1.0, np.int64(1)):
        message = rf"^stream must be a bool, got {re.escape(repr(value))} \(\w+\)$"
        with pytest.raises(TypeError, match=message):
            check_bool("stream", value)
