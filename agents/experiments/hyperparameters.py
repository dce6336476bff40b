"""Hyper-parameters given as text (command line) or YAML, checked against a learner's constructor.

A learner's hyper-parameters are its constructor's keyword arguments (SB3 style), so the
constructor signature is the single source of truth: names are validated against it and values
converted to its annotations. Arguments the runner sets itself (:data:`MANAGED`) are not
hyper-parameters.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "MANAGED",
    "Hyperparameter",
    "constructor_parameters",
    "convert",
    "hyperparameters_of",
    "resolve",
    "union_members",
]

MANAGED = frozenset({"self", "env", "seed", "verbose", "n_envs"})
"""Constructor arguments the runner sets (from ``--seed``, ``--num-envs``, the env id)."""

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null", "~"}


@dataclass(frozen=True)
class Hyperparameter:
    """One constructor argument: its name, annotation and default (``inspect._empty`` if none)."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        """``"float, default 1.0"`` (or ``"float, required"``) for listings."""
        kind = _type_name(self.annotation)
        return f"{kind}, " + ("required" if self.required else f"default {self.default!r}")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def constructor_parameters(cls: type) -> dict[str, tuple[inspect.Parameter, Any]]:
    """Every named argument ``cls(...)`` accepts: name -> (parameter, resolved annotation).

    A constructor ending in ``**kwargs`` is taken to pass them on to its parent's constructor
    (``super().__init__(env, **kwargs)``), so the arguments of the next ``__init__`` up the MRO
    are added, and so on; a subclass's own declaration of a name wins. Annotations are resolved
    (``from __future__ import annotations`` makes them strings).
    """
    found: dict[str, tuple[inspect.Parameter, Any]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        parameters = inspect.signature(init).parameters.values()
        hints = typing.get_type_hints(init)
        for parameter in parameters:
            if parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD,
                parameter.KEYWORD_ONLY,
                parameter.POSITIONAL_ONLY,
            ):
                found.setdefault(parameter.name, (parameter, hints.get(parameter.name, Any)))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return found


def hyperparameters_of(cls: type) -> dict[str, Hyperparameter]:
    """The hyper-parameters of a learner class: its constructor's keyword arguments (followed
    through ``**kwargs`` to the parents', see :func:`constructor_parameters`) minus
    :data:`MANAGED`."""
    return {
        name: Hyperparameter(name, annotation, parameter.default)
        for name, (parameter, annotation) in constructor_parameters(cls).items()
        if name not in MANAGED and parameter.kind is not parameter.POSITIONAL_ONLY
    }


def union_members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``int | None`` -> ``(int, NoneType)``), or itself."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _is_sequence(annotation: Any) -> bool:
    """Whether an annotation is ``list[...]``, ``tuple[...]`` or ``Sequence[...]``."""
    return typing.get_origin(annotation) in (list, tuple, Sequence)


def _convert_one(value: Any, kind: type) -> Any:
    """Convert to bool/int/float/str or raise ValueError (the caller words the message)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if kind is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                number = float(value)
                if number.is_integer():
                    return int(number)
        raise ValueError
    if kind is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError
    if isinstance(value, str):  # kind is str
        return value
    raise ValueError


def convert(name: str, value: Any, annotation: Any, owner: str = "") -> Any:
    """Convert ``value`` (text from the command line, or a YAML value) to ``annotation``.

    Supported annotations: ``bool``, ``int``, ``float``, ``str`` and unions of them with
    ``None`` (``none``/``null`` give None) or with other types (then a string stays a string,
    e.g. ``device: str | torch.device``); a YAML list of strings fits a ``Sequence[str]``
    member (e.g. ``conventions: str | Sequence[str]``). Booleans are spelt true/false (yes/no,
    on/off, 1/0).
    An argument without annotation takes text as a YAML value.

    Raises:
        ValueError: the value does not fit, naming the hyper-parameter, the value and the type.
        TypeError: the annotation cannot be given as text (e.g. a callable).
    """
    if annotation is Any:  # not annotated: read text as YAML (numbers, booleans, null)
        return yaml.safe_load(value) if isinstance(value, str) else value
    members = union_members(annotation)
    where = f" of {owner}" if owner else ""
    if type(None) in members and (
        value is None or (isinstance(value, str) and value.strip().lower() in _NONE)
    ):
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if any(typing.get_args(m) == (str,) and _is_sequence(m) for m in members):
            return list(value)
    simple = [m for m in members if m in (bool, int, float, str)]
    if not simple:
        raise TypeError(
            f"hyper-parameter {name!r}{where} has type {_type_name(annotation)}, which cannot be "
            "given on the command line or in a config file; set it from Python instead"
        )
    if str in simple and isinstance(value, str):
        return value
    for kind in simple:
        try:
            return _convert_one(value, kind)
        except ValueError:
            continue
    raise ValueError(
        f"hyper-parameter {name!r}{where} expects {_type_name(annotation)}, got {value!r}"
    )


def resolve(cls: type, given: Mapping[str, Any], owner: str | None = None) -> dict[str, Any]:
    """Check ``given`` against ``cls``'s constructor and convert every value.

    Args:
        cls: the learner class.
        given: hyper-parameter name -> value (text or YAML value); dashes in names are read as
            underscores (``hidden-size`` is ``hidden_size``).
        owner: how to name the learner in messages (default: the class name).

    Returns:
        name -> converted value, for the names given (defaults are left to the constructor).

    Raises:
        ValueError: an unknown name (listing the valid ones), a required one missing, or a value
            that does not fit its type.
    """
    owner = owner or cls.__name__
    known = hyperparameters_of(cls)
    names = {str(name).replace("-", "_"): value for name, value in given.items()}
    unknown = sorted(set(names) - set(known))
    if unknown:
        managed = sorted(set(unknown) & MANAGED)
        hint = f" ({managed} are set with --seed / --num-envs)" if managed else ""
        raise ValueError(
            f"unknown hyper-parameter(s) {unknown} for {owner}{hint}; valid: {sorted(known)}"
        )
    missing = sorted(n for n, h in known.items() if h.required and n not in names)
    if missing:
        raise ValueError(f"{owner} needs the hyper-parameter(s) {missing}")
    return {n: convert(n, v, known[n].annotation, owner) for n, v in names.items()}
