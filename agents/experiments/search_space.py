"""The YAML side of ``bpl tune``: hyper-parameter ranges, the sampler and the pruner, checked.

A range is a one-key mapping, the key naming the distribution::

    lam: {uniform: [0.0, 1.0]}                 # float, uniform in [low, high]
    lr_synth: {log_uniform: [1.0e-5, 1.0e-2]}  # float, uniform in log between 0 < low < high
    hidden_size: {int: [8, 64]}                # int in [low, high], both included
    core: {categorical: [rnn, lstm]}           # one of the listed values

and the sampler and the pruner are a name or a one-key mapping from the name to its options
(the keyword arguments of the Optuna class)::

    sampler: {tpe: {n_startup_trials: 4}}      # tpe (default) or random
    pruner: {median: {n_warmup_steps: 20}}     # median (default), successive_halving or none

Every error names the key of the file and says what is allowed. Optuna is imported only by the
functions that build Optuna objects.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.experiments import hyperparameters as hp

__all__ = [
    "DISTRIBUTIONS",
    "PRUNERS",
    "SAMPLERS",
    "Range",
    "build_pruner",
    "build_sampler",
    "parse_search_space",
    "require_optuna",
]

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "categorical")
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}
PRUNERS = {
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "none": "NopPruner",
}


def require_optuna():
    """The ``optuna`` module, or an ImportError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "bpl tune needs Optuna, which is not installed: pip install 'bp-lambda[tune]'"
        ) from None
    return optuna


@dataclass(frozen=True)
class Range:
    """One hyper-parameter's search range.

    Attributes:
        name: the learner's constructor argument.
        kind: one of :data:`DISTRIBUTIONS`.
        values: ``(low, high)`` for the numeric kinds, the choices for ``categorical``.
    """

    name: str
    kind: str
    values: tuple[Any, ...]

    def suggest(self, trial) -> Any:
        """Draw this hyper-parameter's value for an Optuna ``trial``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.name, low, high)
        return trial.suggest_float(self.name, low, high, log=self.kind == "log_uniform")


def _parse_range(name: str, spec: Any, where: str) -> Range:
    key = f"{where}.{name}"
    allowed = ", ".join(DISTRIBUTIONS)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(
            f"{key} must be a one-key mapping {{DISTRIBUTION: VALUES}} with DISTRIBUTION one of "
            f"{allowed}, e.g. {{log_uniform: [1.0e-5, 1.0e-2]}}; got {spec!r}"
        )
    ((kind, values),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{key}: unknown distribution {kind!r}; allowed: {allowed}")
    if kind == "categorical":
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"{key}: categorical needs a non-empty list of choices, got {values!r}"
            )
        if any(not isinstance(v, str | int | float | bool) and v is not None for v in values):
            raise ValueError(
                f"{key}: categorical choices must be strings, numbers, booleans or "
                f"null (what Optuna stores), got {values!r}"
            )
        return Range(name, kind, tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise ValueError(f"{key}: {kind} needs [low, high], got {values!r}")
    number = int if kind == "int" else float
    try:
        low, high = (hp.convert(key, v, number) for v in values)
    except ValueError:
        raise ValueError(
            f"{key}: {kind} needs two {number.__name__}s [low, high], got {values!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{key}: {kind} needs finite low < high, got {values!r}")
    if kind == "log_uniform" and low <= 0:
        raise ValueError(f"{key}: log_uniform needs 0 < low < high, got {values!r}")
    return Range(name, kind, (low, high))


def parse_search_space(
    search: Any, learner_class: type, fixed: Mapping[str, Any], where: str
) -> list[Range]:
    """Check a ``search:`` mapping against the learner's constructor and return its ranges.

    Each bound or choice is converted to the argument's type
    (:func:`agents.experiments.hyperparameters.convert`), so a range of the wrong type (floats
    for an int argument) is refused before any trial runs.

    Raises:
        ValueError: naming ``where.NAME`` for a malformed range, an unknown name (listing the
            valid ones), a name also fixed under ``hyperparameters``, or values of the wrong
            type.
    """
    if not isinstance(search, Mapping) or not search:
        raise ValueError(
            f"{where} must be a non-empty mapping NAME: {{DISTRIBUTION: VALUES}}, got {search!r}"
        )
    accepted = hp.hyperparameters_of(learner_class)
    ranges = []
    for name, spec in search.items():
        if name not in accepted:
            raise ValueError(
                f"{where}.{name}: {learner_class.__name__} has no hyper-parameter "
                f"{name!r}; valid: {sorted(accepted)}"
            )
        if name in fixed:
            raise ValueError(
                f"{where}.{name} is also fixed under hyperparameters; give it in one place"
            )
        ranges.append(_parse_range(name, spec, where))
    for entry in ranges:
        for value in entry.values:
            hp.convert(entry.name, value, accepted[entry.name].annotation, f"{where}.{entry.name}")
    return ranges


def _named_spec(
    spec: Any, table: Mapping[str, str], default: str, where: str
) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a ``NAME`` or ``{NAME: {OPTION: VALUE}}`` entry."""
    options: Any = {}
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        name = spec
    elif isinstance(spec, Mapping) and len(spec) == 1:
        ((name, options),) = spec.items()
        options = {} if options is None else options
    else:
        raise ValueError(
            f"{where} must be one of {sorted(table)} or {{NAME: {{OPTION: VALUE}}}}, got {spec!r}"
        )
    if name not in table:
        raise ValueError(f"{where}: unknown {where} {name!r}; allowed: {sorted(table)}")
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}.{name}: options must be a mapping, got {options!r}")
    return name, dict(options)


def _build(module, spec: Any, table: Mapping[str, str], default: str, where: str, **managed: Any):
    name, options = _named_spec(spec, table, default, where)
    cls = getattr(module, table[name])
    parameters = inspect.signature(cls.__init__).parameters
    valid = sorted(p for p in parameters if p != "self" and p not in managed)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{where}.{name}: unknown option(s) {unknown}; valid: {valid}")
    try:
        return cls(**options, **{k: v for k, v in managed.items() if k in parameters})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}.{name}: {error}") from None


def build_sampler(spec: Any, seed: int):
    """The Optuna sampler of a ``sampler:`` entry (default TPE), seeded with ``seed``."""
    optuna = require_optuna()
    return _build(optuna.samplers, spec, SAMPLERS, "tpe", "sampler", seed=seed)


def build_pruner(spec: Any):
    """The Optuna pruner of a ``pruner:`` entry (default median)."""
    optuna = require_optuna()
    return _build(optuna.pruners, spec, PRUNERS, "median", "pruner")
