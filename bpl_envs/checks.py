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

Beyond scalars: :func:`check_choice` (one of a few strings), :func:`check_seed` (a seed for
numpy, Gymnasium and torch), :func:`check_device` (a torch device this machine has),
:func:`check_prediction` (an env action: a finite floating array of an exact shape),
:func:`check_scored_loss` (the loss of an action, refused if it overflows float64),
:func:`check_targets_fit_loss` (targets the loss's gradient holds for) and
:func:`check_data_array` (a user's data: a finite real array of a given rank).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from bpl_envs.losses import Loss

__all__ = [
    "MAX_SEED",
    "check_bool",
    "check_choice",
    "check_data_array",
    "check_finite_entries",
    "check_device",
    "check_finite",
    "check_fraction",
    "check_in_closed_interval",
    "check_in_open_interval",
    "check_int",
    "check_non_negative",
    "check_open_fraction",
    "check_optional_choice",
    "check_optional_int",
    "check_positive",
    "check_prediction",
    "check_scored_loss",
    "check_seed",
    "check_targets_fit_loss",
    "check_vector_seed",
]

MAX_SEED = 2**64 - 1
"""The largest seed every generator here takes (torch's ``manual_seed`` stops at 2**64 - 1)."""


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
    try:
        return check_int(name, value, minimum=minimum, maximum=maximum)
    except ValueError:
        raise _value_error(name, value, allowed) from None


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


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` as a plain str if it is one of ``choices`` (TypeError for a non-string)."""
    return _choice(name, value, choices, f"one of {list(choices)}")


def check_optional_choice(name: str, value: Any, choices: Sequence[str]) -> str | None:
    """``None``, or :func:`check_choice` of ``value`` (errors then say that None is allowed)."""
    return (
        None if value is None else _choice(name, value, choices, f"None or one of {list(choices)}")
    )


def _choice(name: str, value: Any, choices: Sequence[str], allowed: str) -> str:
    if not isinstance(value, str):
        raise _type_error(name, value, allowed)
    if value not in choices:
        raise _value_error(name, value, allowed)
    return str(value)


def check_seed(name: str, value: Any) -> int | None:
    """``None`` or an int in ``[0, MAX_SEED]`` (NumPy ints too): what numpy, Gymnasium and torch
    all accept as a seed. Returns a plain int."""
    return check_optional_int(name, value, minimum=0, maximum=MAX_SEED)


def check_vector_seed(seed: Any, num_envs: int) -> list[int | None]:
    """The seed of each sub-env of a vector env's ``reset(seed=...)``, as ``SyncVectorEnv`` seeds
    them: ``None`` for all (keep the generators), an int s gives ``s + i`` to sub-env i, a list
    gives each its own (``None`` entries keep that generator). Seeds are ints >= 0 (NumPy ints
    too).

    Raises:
        TypeError: a seed that is not an int (a float, a bool, a string...).
        ValueError: a negative seed, or a list of another length than ``num_envs``.
    """
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        if len(seed) != num_envs:
            raise ValueError(
                f"seed as a list must have num_envs={num_envs} entries, got {len(seed)}"
            )
        return [check_seed(f"seed[{i}]", value) for i, value in enumerate(seed)]
    if not isinstance(seed, int | np.integer) and seed is not None:
        raise TypeError(
            f"seed must be None, an int >= 0 or a list of num_envs={num_envs} such seeds (or "
            f"None), got {seed!r} ({type(seed).__name__})"
        )
    first = check_seed("seed", seed)
    return [None if first is None else first + i for i in range(num_envs)]


def check_device(name: str, value: Any) -> torch.device:
    """Return ``value`` as a ``torch.device`` that exists on this machine.

    Accepts a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a ``torch.device``.
    A device this machine does not have (``"cuda"`` without a GPU or without a CUDA build of
    torch, an index past the last GPU) raises a ValueError that says so, before anything is
    allocated.
    """
    import torch

    allowed = "'cpu', 'cuda', 'cuda:<index>', 'mps' or a torch.device"
    if not isinstance(value, str | torch.device):
        raise _type_error(name, value, allowed)
    try:
        device = torch.device(value)
    except RuntimeError:
        raise _value_error(name, value, allowed) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise ValueError(
                f"{name}={str(value)!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}, built {build}; torch.cuda.is_available() is False); "
                f"use {name}='cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name}={str(value)!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name}={str(value)!r}: MPS is not available on this machine")
        return device
    raise _value_error(name, value, allowed)


def _as_array(name: str, value: Any) -> np.ndarray:
    """``np.asarray(value)`` with our message for what numpy cannot turn into an array."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nesting, or an object numpy refuses
        raise ValueError(
            f"{name} must be an array of numbers of one shape (nested lists of equal lengths), "
            f"got a {type(value).__name__} numpy cannot read as one ({error})"
        ) from None


def check_prediction(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a prediction (an env action) and return it as float64, unchanged in value and shape.

    Args:
        name: what to call the argument in error messages.
        value: array-like of a floating dtype with shape exactly ``shape``.
        shape: the required shape, ``(output_size,)`` or ``(num_envs, output_size)``.

    Raises:
        TypeError: the dtype is not floating (ints and bools are not predictions).
        ValueError: the shape differs from ``shape``, an entry is NaN or infinite, or the value
            is not an array of one shape (ragged lists).
    """
    array = _as_array(name, value)
    if array.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating array (the prediction: logits or values), got dtype "
            f"{array.dtype}"
        )
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(
            f"{name} must be finite, got {array.size - int(finite.sum())} NaN or inf entries"
        )
    return array.astype(np.float64)


def check_scored_loss(
    name: str, predictions: np.ndarray, targets: np.ndarray, loss: Loss
) -> np.ndarray:
    """The per-step loss ``loss.value(predictions, targets)`` in float64, refused if not finite.

    Finite predictions and targets of magnitude up to 1e150 always give a finite loss; beyond
    that a squared error or a sum can overflow float64, and an infinite (or NaN) reward would
    be a wrong result, so the step raises instead.

    Args:
        name: what to call the predictions in the message (``"action"``, ``"actions"``).
        predictions: float64 ``(..., output_size)``, finite (:func:`check_prediction`).
        targets: ``(..., output_size)``, the same shape.
        loss: the task's :class:`~bpl_envs.losses.Loss`.

    Raises:
        ValueError: the loss is not finite; the message gives the largest entry.
    """
    targets = np.asarray(targets, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        value = np.asarray(loss.value(predictions, targets), dtype=np.float64)
    if not np.isfinite(value).all():
        largest = float(np.abs(predictions).max())
        raise ValueError(
            f"{name} with entries up to {largest:.3g} in magnitude overflow the {loss.name!r} "
            "loss in float64 (it is not a finite number); predictions within ±1e150 are always "
            "scored"
        )
    return value


TARGET_SUM_TOLERANCE = 1e-4
"""How far from 1 a "ce" target's sum may be (float32 rounding of probability vectors)."""


def check_targets_fit_loss(name: str, targets: np.ndarray, loss: str) -> None:
    """Refuse targets the loss's gradient does not hold for (a learner would get a wrong
    gradient without any error): "bce" targets are probabilities in [0, 1], "ce" targets are
    probability vectors (entries >= 0 summing to 1); "mse" takes any finite target.

    Args:
        name: what to call the targets in the message.
        targets: finite float array ``(..., output_size)`` of the scored steps.
        loss: ``"mse"``, ``"bce"`` or ``"ce"``.

    Raises:
        ValueError: naming ``name``, the loss and the first offending value.
    """
    targets = np.asarray(targets)
    if targets.size == 0:
        return
    if loss == "bce" and ((targets < 0) | (targets > 1)).any():
        raise ValueError(
            f"{name} must lie in [0, 1] for loss='bce' (probabilities of each bit), got values "
            f"from {targets.min():g} to {targets.max():g}"
        )
    if loss == "ce":
        sums = targets.sum(axis=-1, dtype=np.float64)
        off = np.abs(sums - 1.0) > TARGET_SUM_TOLERANCE
        if (targets < 0).any() or off.any():
            found = (
                f"a negative entry ({targets.min():g})"
                if (targets < 0).any()
                else f"a target summing to {np.ravel(sums[off])[0]:g}"
            )
            raise ValueError(
                f"{name} must be probability vectors (one-hot labels or any entries >= 0 "
                f"summing to 1) for loss='ce', got {found}"
            )


def check_data_array(
    name: str, value: Any, ndim: int | tuple[int, ...], *, finite: bool = True
) -> np.ndarray:
    """Return a user's data array as float32 ``ndim``-D (one of ``ndim``), non-empty, finite
    (``finite=False``: NaN/inf entries are the caller's to check, e.g. only where they are read).

    Real numbers of any dtype (bool, int, float) are accepted; complex numbers, strings and
    objects are not. Values too large for float32 count as infinite.

    Raises:
        TypeError: the dtype is not real (complex, str, object).
        ValueError: ragged nesting, another rank, an empty dimension, or NaN/inf entries (the
            message gives their number and the index of the first).
    """
    array = _as_array(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (bool, int or float), got dtype {array.dtype}"
        )
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in ranks:
        rank = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{name} must be a {rank} array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    with np.errstate(over="ignore"):
        converted = array.astype(np.float32)
    if finite:
        check_finite_entries(name, converted, np.ones(converted.shape, dtype=bool), array)
    return converted


def check_finite_entries(
    name: str, converted: np.ndarray, where: np.ndarray, original: Any = None, also: str = ""
) -> None:
    """Refuse NaN/inf entries of ``converted`` (a float32 array) where the bool mask ``where``
    (broadcast against its shape) is True; the message counts them and gives the first index
    (and its value in ``original``, the array as given, if any), with ``also`` after the name."""
    bad = ~np.isfinite(converted) & np.broadcast_to(where, converted.shape)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        value = (converted if original is None else original)[first]
        raise ValueError(
            f"{name} must be finite (in float32){also}, got {int(bad.sum())} NaN or inf "
            f"entries, the first at index {first}: {value!r}"
        )
