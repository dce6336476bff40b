"""Argument checks shared by the envs and the learners: the one home of argument validation.

Every check returns the value converted to a plain Python type (``int``, ``float``, ``bool``) or
raises:

- ``TypeError`` when the type is wrong (a string, ``None``, a float where an int is needed, a
  bool where a number is needed);
- ``ValueError`` when the type is right but the value is not allowed (out of range, NaN, inf).

Both messages name the argument, the value received and what is allowed. NumPy scalars are
accepted wherever the matching Python type is (``np.float32(0.5)``, ``np.int64(3)``,
``np.bool_(True)``); bools are never numbers here (``True`` is not an int 1).

Intervals are named by their ends: :func:`check_in_closed_interval` includes both ends,
:func:`check_in_open_interval` excludes both; :func:`check_fraction` is ``[0, 1]`` and
:func:`check_open_fraction` is ``(0, 1)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_finite",
    "check_fraction",
    "check_in_closed_interval",
    "check_in_open_interval",
    "check_int",
    "check_non_negative",
    "check_open_fraction",
    "check_optional_int",
    "check_positive",
]


def _type_error(name: str, value: Any, allowed: str) -> TypeError:
    return TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")


def _value_error(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a bool; a Python or NumPy bool only (not 0/1, not a string)."""
    if not _is_bool(value):
        raise _type_error(name, value, "a bool")
    return bool(value)


def _int_range(minimum: int | None, maximum: int | None) -> str:
    """What :func:`check_int` allows, in words: ``"an int >= 1"``, ``"an int in [0, 9]"``..."""
    if minimum is None and maximum is None:
        return "an int"
    if maximum is None:
        return f"an int >= {minimum}"
    if minimum is None:
        return f"an int <= {maximum}"
    return f"an int in [{minimum}, {maximum}]"


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an int in ``[minimum, maximum]`` (either end optional).

    Python and NumPy integers are accepted; bools and floats (even 2.0) are not.
    """
    allowed = _int_range(minimum, maximum)
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise _type_error(name, value, allowed)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _value_error(name, value, allowed)
    return number


def check_optional_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """``None``, or :func:`check_int` of ``value`` (errors then say that None is allowed)."""
    if value is None:
        return None
    allowed = f"None or {_int_range(minimum, maximum)}"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise _type_error(name, value, allowed)
    return check_int(name, value, minimum=minimum, maximum=maximum)


def _real(name: str, value: Any, allowed: str) -> float:
    """``value`` as a float if it is a real number that is not NaN, else raise."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise _type_error(name, value, allowed)
    number = float(value)
    if math.isnan(number):
        raise _value_error(name, value, allowed)
    return number


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number (not NaN, not ±inf)."""
    allowed = "a finite number"
    number = _real(name, value, allowed)
    if not math.isfinite(number):
        raise _value_error(name, value, allowed)
    return number


def check_non_negative(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number >= 0."""
    allowed = "a finite number >= 0"
    number = _real(name, value, allowed)
    if not (math.isfinite(number) and number >= 0.0):
        raise _value_error(name, value, allowed)
    return number


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0."""
    allowed = "a finite number > 0"
    number = _real(name, value, allowed)
    if not (math.isfinite(number) and number > 0.0):
        raise _value_error(name, value, allowed)
    return number


def check_in_closed_interval(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as a float if ``low <= value <= high`` (both ends allowed)."""
    allowed = f"a number in [{low:g}, {high:g}]"
    number = _real(name, value, allowed)
    if not low <= number <= high:
        raise _value_error(name, value, allowed)
    return number


def check_in_open_interval(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as a float if ``low < value < high`` (both ends excluded)."""
    allowed = f"a number in ({low:g}, {high:g})"
    number = _real(name, value, allowed)
    if not low < number < high:
        raise _value_error(name, value, allowed)
    return number


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float in the closed interval ``[0, 1]`` (e.g. λ, γ)."""
    return check_in_closed_interval(name, value, 0.0, 1.0)


def check_open_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float in the open interval ``(0, 1)`` (e.g. a test fraction)."""
    return check_in_open_interval(name, value, 0.0, 1.0)
