"""Shared pieces of the property-based tests of the public surface (hypothesis).

Each argument of an env, a learner or a config file is described by an :class:`Arg`: a
strategy that draws values of every kind (valid ones near the edges of what is allowed, and
wrong types: strings, None, bools where numbers are expected, NaN, inf, numpy scalars, lists,
dicts...) and an oracle that says, independently of the library's own checks, whether a value
is allowed and what it means (the plain Python value it must be stored as).

The properties then check the contract of the public surface: a valid value works and is stored
as its plain meaning; an invalid one raises TypeError or ValueError whose message names the
argument, never an error from deep inside numpy, torch or Gymnasium.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

INVALID = object()
"""What an oracle returns for a value that must be refused."""

MAYBE = object()
"""What an oracle returns where either outcome is right (e.g. a fraction so small that a data
split may come out empty): the call may work or refuse, but a refusal must name the argument."""

NUMPY_FLOATS = (np.float16, np.float32, np.float64)
NUMPY_INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)

garbage = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["", "1", "0.5", "1e-4", "nan", "true", "None", "cpu", "tanh"]),
    st.lists(st.integers(-2, 2), max_size=3),
    st.tuples(st.floats(-1, 1)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.complex_numbers(max_magnitude=3),
    st.builds(object),
    st.builds(lambda x: np.array([x]), st.floats(0, 1)),
    st.builds(np.array, st.floats(0, 1)),  # a 0-d array is not a scalar argument
)
"""Values that are never a valid scalar argument."""

bools = st.one_of(st.booleans(), st.builds(np.bool_, st.booleans()))

huge_ints = st.one_of(st.integers(2**31, 2**70), st.integers(-(2**70), -(2**31)))


def ints(low: int, high: int) -> st.SearchStrategy[Any]:
    """Integers around [low, high], as Python and NumPy ints."""
    values = st.integers(low, high)
    return st.one_of(values, st.tuples(values, st.sampled_from(NUMPY_INTS)).map(_numpy_int))


def _numpy_int(pair: tuple[int, type]) -> Any:
    """``dtype(value)``, or the Python int where the dtype cannot hold it (-1 as uint8)."""
    value, dtype = pair
    info = np.iinfo(dtype)
    return dtype(value) if info.min <= value <= info.max else value


def floats(low: float, high: float) -> st.SearchStrategy[Any]:
    """Floats around [low, high] plus NaN and ±inf, as Python and NumPy floats."""
    values = st.one_of(
        st.floats(low, high),
        st.sampled_from([low, high, math.nan, math.inf, -math.inf, 1e308, -1e-300]),
    )
    return st.one_of(values, st.tuples(values, st.sampled_from(NUMPY_FLOATS)).map(_numpy_float))


def _numpy_float(pair: tuple[float, type]) -> Any:
    """``dtype(value)``; values beyond the dtype's range become ±inf (also a case to test)."""
    value, dtype = pair
    with np.errstate(over="ignore"):
        return dtype(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class Arg:
    """One argument: how to draw its values and what each value means.

    Attributes:
        likely: draws values that are mostly allowed (in range, Python and NumPy types).
        unlikely: draws values that are mostly refused (out of range, wrong types, junk).
        meaning: value -> the plain value it must be stored as, or INVALID, or MAYBE (the
            oracle decides; the two strategies only set the mix).
    """

    likely: st.SearchStrategy[Any]
    unlikely: st.SearchStrategy[Any]
    meaning: Callable[[Any], Any]

    @property
    def strategy(self) -> st.SearchStrategy[Any]:
        """Three draws in four from ``likely``, so that valid calls are common."""
        return st.integers(0, 3).flatmap(lambda k: self.unlikely if k == 3 else self.likely)


def _optional(base: Arg) -> Arg:
    return Arg(
        st.one_of(st.none(), base.likely),
        base.unlikely,
        lambda value: None if value is None else base.meaning(value),
    )


def int_arg(low: int, high: int | None = None, *, draw_up_to: int | None = None) -> Arg:
    """An int in [low, high] (high None: unbounded); Python or NumPy ints, never bools/floats."""
    top = high if high is not None else (draw_up_to if draw_up_to is not None else low + 20)

    def meaning(value: Any) -> Any:
        if not _is_int(value) or value < low or (high is not None and value > high):
            return INVALID
        return int(value)

    likely = ints(low, min(top, low + 40))
    unlikely = st.one_of(
        ints(low - 3, low - 1), ints(top + 1, top + 3), floats(low, top), bools, garbage
    )
    return Arg(likely, unlikely, meaning)


def optional_int_arg(low: int, high: int | None = None, *, draw_up_to: int | None = None) -> Arg:
    return _optional(int_arg(low, high, draw_up_to=draw_up_to))


def real_arg(
    low: float, high: float, *, closed: tuple[bool, bool] = (True, True), draw: tuple = ()
) -> Arg:
    """A finite real number in [low, high] (or open at an end); ints and NumPy numbers too."""
    draw_low, draw_high = draw or (low, high)

    def meaning(value: Any) -> Any:
        if not _is_real(value):
            return INVALID
        number = float(value)
        if not math.isfinite(number):
            return INVALID
        above = number >= low if closed[0] else number > low
        below = number <= high if closed[1] else number < high
        return number if above and below else INVALID

    spread = max(1.0, draw_high - draw_low)
    whole = (math.ceil(draw_low), math.floor(min(draw_high, 1e6)))
    likely = st.one_of(
        floats(draw_low, draw_high), ints(*whole) if whole[0] <= whole[1] else st.nothing()
    )
    unlikely = st.one_of(
        floats(draw_low - spread, draw_high + spread),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        bools,
        garbage,
    )
    return Arg(likely, unlikely, meaning)


def optional_real_arg(
    low: float, high: float, *, closed: tuple[bool, bool] = (True, True), draw: tuple = ()
) -> Arg:
    """None, or :func:`real_arg`."""
    return _optional(real_arg(low, high, closed=closed, draw=draw))


def bool_arg() -> Arg:
    return Arg(
        bools,
        st.one_of(ints(0, 1), floats(0, 1), garbage),
        lambda value: bool(value) if isinstance(value, bool | np.bool_) else INVALID,
    )


def choice_arg(choices: Sequence[str]) -> Arg:
    """One of ``choices`` (a string); anything else, including near misses, is invalid."""
    near_misses = [c.upper() for c in choices] + [c + " " for c in choices] + ["", "x"]
    return Arg(
        st.sampled_from(list(choices)),
        st.one_of(st.sampled_from(near_misses), garbage),
        lambda value: str(value) if isinstance(value, str) and value in choices else INVALID,
    )


def optional_choice_arg(choices: Sequence[str]) -> Arg:
    return _optional(choice_arg(choices))


def names_argument(error: BaseException, names: Sequence[str]) -> bool:
    """Whether the message of ``error`` names one of ``names`` as a word."""
    message = str(error)
    return any(re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message) for name in names)


Cross = Callable[[dict[str, Any]], Sequence[str]]
"""Constraints between arguments: the valid meanings -> names of arguments that do not fit
together (empty when they do)."""


def call_with_contract(
    call: Callable[..., Any],
    args: dict[str, Arg],
    given: dict[str, Any],
    cross: Cross = lambda meanings: (),  # noqa: ARG005
    also_allowed: tuple[type[BaseException], ...] = (),
) -> tuple[Any, dict[str, Any]]:
    """Call ``call(**given)`` and check the contract of its arguments.

    All valid (and fitting together): the call must work. Some invalid: it must raise TypeError
    or ValueError naming one of the invalid ones. Values whose meaning is MAYBE may be accepted
    or refused (naming them).

    Returns:
        (what the call returned, or None if it raised as it should; name -> plain meaning).
    """
    meanings, invalid, maybe = {}, [], []
    for name, value in given.items():
        meaning = args[name].meaning(value)
        if meaning is INVALID:
            invalid.append(name)
        elif meaning is MAYBE:
            maybe.append(name)
        else:
            meanings[name] = meaning
    invalid += [name for name in cross(meanings) if name not in invalid]
    try:
        result = call(**given)
    except (TypeError, ValueError, *also_allowed) as error:
        event("refused")
        if not invalid and not maybe:
            raise AssertionError(f"valid arguments {describe(given)} refused: {error!r}") from error
        if isinstance(error, TypeError | ValueError):
            assert names_argument(error, invalid + maybe), (
                f"{describe(given)}: the error does not name {invalid + maybe}: {error!r}"
            )
        return None, meanings
    assert not invalid, f"{describe(given)} accepted, but {invalid} must be refused"
    event("accepted")
    return result, meanings


def subsets_of(args: dict[str, Arg], *, max_size: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """A few of ``args`` (1..max_size names), each with a drawn value."""

    @st.composite
    def draw(data: st.DrawFn) -> dict[str, Any]:
        names = data(
            st.lists(st.sampled_from(sorted(args)), min_size=1, max_size=max_size, unique=True)
        )
        return {name: data(args[name].strategy) for name in names}

    return draw()


def describe(given: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r} ({type(v).__name__})" for k, v in given.items()) or "(none)"


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def reference_loss(kind: str, prediction: np.ndarray, target: np.ndarray) -> float:
    """The per-step loss of one prediction (output_size,), by scalar formulas in float64."""
    p = [float(v) for v in prediction]
    y = [float(v) for v in target]
    if kind == "mse":
        return math.fsum((a - b) ** 2 for a, b in zip(p, y, strict=True)) / len(p)
    if kind == "bce":  # -[y log s(p) + (1 - y) log(1 - s(p))], log(1 - s(p)) = log s(-p)
        terms = [
            -(b * _log_sigmoid(a) + (1 - b) * _log_sigmoid(-a)) for a, b in zip(p, y, strict=True)
        ]
        return math.fsum(terms) / len(p)
    top = max(p)  # ce: sum_k y_k (logsumexp(p) - p_k) = sum_k y_k ((top - p_k) + log sum), y_k != 0
    log_sum = math.log(math.fsum(math.exp(a - top) for a in p))
    return math.fsum(b * ((top - a) + log_sum) for a, b in zip(p, y, strict=True) if b != 0)
