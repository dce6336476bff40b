"""Every learner by name, so a runner (the ``bpl`` CLI, a sweep, a comparison script) can swap one
for another: ``get_learner("dni")(env, n=3, **common_hyperparameters)``.

Learners enter the registry three ways:

- built in: this module's table (all but ``td_lambda`` are recurrent learners,
  :class:`~agents.sequence_learner.SequenceLearner`; ``td_lambda`` predicts values on a Markov
  reward process such as ``bpl/RandomWalk-v0``);
- in-process: :func:`register_learner` (visible to this process and to the worker processes that
  :func:`agents.experiments.parallel.run_cells` starts from it);
- from an installed distribution: an entry point in the group :data:`ENTRY_POINT_GROUP`, e.g. in
  its ``pyproject.toml``::

      [project.entry-points."bp_lambda.learners"]
      my_rule = "my_package.learners:MyRule"

  read the first time the registry is consulted (:func:`load_plugins`). The entry point names a
  learner class; the first line of its docstring is its description in ``bpl list``. An entry
  point that fails to import, or names something that is not a learner, is left out with a
  :class:`PluginWarning` and recorded in :func:`plugin_errors` (``bpl list`` shows it); the rest of
  the registry works as before.

A learner class must follow the contract of ``docs/extending.md``, which :func:`check_learner_class`
verifies as far as it can without building one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import warnings
from dataclasses import dataclass

from agents.base import BaseLearner
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.eprop import EProp
from agents.experiments.hyperparameters import constructor_parameters
from agents.no_sg import NoSG
from agents.rtrl import RTRL
from agents.snap import SnAp1
from agents.td_lambda import TDLambda
from agents.uoro import UORO

__all__ = [
    "ENTRY_POINT_GROUP",
    "LEARNERS",
    "LearnerEntry",
    "PluginWarning",
    "check_learner_class",
    "get_learner",
    "learner_entries",
    "load_plugins",
    "plugin_errors",
    "register_learner",
    "registered_in_process",
]

ENTRY_POINT_GROUP = "bp_lambda.learners"
"""The entry-point group whose entries (name = learner class) the registry reads."""

BUILT_IN = "agents"
IN_PROCESS = "register_learner"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*\Z")


class PluginWarning(UserWarning):
    """An entry point of :data:`ENTRY_POINT_GROUP` was not registered (the message says why)."""


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner.

    Attributes:
        cls: the learner class.
        description: one line for ``bpl list``.
        origin: ``"agents"`` (built in), ``"register_learner"`` (registered in this process) or
            ``"<distribution> <version>"`` (an installed entry point).
    """

    cls: type[BaseLearner]
    description: str
    origin: str = BUILT_IN


LEARNERS: dict[str, LearnerEntry] = {
    "bp_lambda": LearnerEntry(
        BPLambda, "BP(lambda): online synthetic gradients learned by TD(lambda) with traces"
    ),
    "bptt": LearnerEntry(BPTT, "full backpropagation through time, one update per batch"),
    "tbptt": LearnerEntry(
        TruncatedBPTT, "truncated BPTT: backpropagation within chunks of n tokens"
    ),
    "dni": LearnerEntry(
        DNI, "truncated BPTT plus synthetic gradients regressed on n-step bootstrapped targets"
    ),
    "nosg": LearnerEntry(NoSG, "no synthetic gradient: immediate loss, one-step derivatives"),
    "rtrl": LearnerEntry(RTRL, "real-time recurrent learning: exact forward-mode gradient"),
    "uoro": LearnerEntry(
        UORO, "UORO: unbiased rank-one estimate of RTRL's influence matrix (Tallec & Ollivier)"
    ),
    "snap1": LearnerEntry(
        SnAp1, "SnAp-1: RTRL keeping the influence entries one step touches (Menick et al.)"
    ),
    "eprop": LearnerEntry(
        EProp, "e-prop: eligibility traces of each unit's internal state (Bellec et al.)"
    ),
    "td_lambda": LearnerEntry(
        TDLambda, "TD(lambda) value prediction on a Markov reward process (e.g. the random walk)"
    ),
}
"""Name -> learner: the built-in ones, then those registered in this process or by entry points
(complete once :func:`load_plugins` has run; :func:`learner_entries` makes sure it has)."""

_plugin_errors: dict[str, str] = {}
_plugin_names: set[str] = set()
_plugins_loaded = False


def check_learner_class(cls: object) -> type[BaseLearner]:
    """Check what the runner needs from a learner class, without building one.

    It must subclass :class:`~agents.base.BaseLearner` (recurrent learners:
    :class:`~agents.sequence_learner.SequenceLearner`), implement every abstract method, and take
    ``env`` as its first argument and ``seed`` and ``verbose`` as keywords, with annotations that
    resolve (so the command line can list and convert its hyper-parameters).

    Returns:
        ``cls``.

    Raises:
        TypeError: naming what is missing.
    """
    if not isinstance(cls, type) or not issubclass(cls, BaseLearner):
        raise TypeError(
            "a learner must be a subclass of agents.base.BaseLearner (recurrent learners: "
            f"agents.sequence_learner.SequenceLearner), got {cls!r}"
        )
    name = f"{cls.__module__}.{cls.__qualname__}"
    if inspect.isabstract(cls):
        raise TypeError(
            f"{name} does not implement {sorted(cls.__abstractmethods__)}, which every learner "
            "must (see docs/extending.md)"
        )
    try:
        parameters = constructor_parameters(cls)
    except (NameError, TypeError, ValueError) as error:
        raise TypeError(
            f"the constructor arguments of {name} cannot be read ({type(error).__name__}: "
            f"{error}); annotate them with importable types"
        ) from None
    arguments = [argument for argument in parameters if argument != "self"]
    if (
        not arguments
        or arguments[0] != "env"
        or parameters["env"][0].kind is (inspect.Parameter.KEYWORD_ONLY)
    ):
        raise TypeError(
            f"the constructor of {name} must take `env` as its first positional "
            f"argument, got {arguments}"
        )
    missing = [argument for argument in ("seed", "verbose") if argument not in parameters]
    if missing:
        raise TypeError(
            f"the constructor of {name} must accept the keyword argument(s) "
            f"{missing} (the runner sets them)"
        )
    return cls


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"name must be lower-case letters, digits, '_' or '-', starting with a "
            f"letter, got {name!r}"
        )


def _add(name: str, cls: object, description: object, origin: str, replace: bool) -> None:
    _check_name(name)
    learner_class = check_learner_class(cls)
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    if not description.strip() or "\n" in description.strip():
        raise ValueError(f"description must be one non-empty line, got {description!r}")
    existing = LEARNERS.get(name)
    if existing is not None and (
        existing.origin == BUILT_IN or (existing.cls is not cls and not replace)
    ):
        hint = "" if existing.origin == BUILT_IN else "; pass replace=True to replace it"
        raise ValueError(
            f"a learner named {name!r} is already registered ({existing.cls.__module__}."
            f"{existing.cls.__qualname__}, from {existing.origin}){hint}"
        )
    LEARNERS[name] = LearnerEntry(learner_class, description.strip(), origin)


def register_learner(
    name: str, cls: type[BaseLearner], description: str, *, replace: bool = False
) -> None:
    """Register a learner class under ``name`` in this process.

    Args:
        name: what ``bpl train --learner`` and configs call it: lower-case letters, digits,
            ``_`` or ``-``.
        cls: the learner class (see :func:`check_learner_class` and ``docs/extending.md``).
        description: one line for ``bpl list``.
        replace: allow replacing a learner registered earlier under ``name`` by
            :func:`register_learner` or an entry point (built-in names are never replaced).
            Registering the same class again is always allowed.

    Raises:
        TypeError: ``name`` or ``description`` is not a str, or ``cls`` breaks the contract.
        ValueError: a malformed name or description, or a name already taken.
    """
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool, got {replace!r}")
    load_plugins()
    _add(name, cls, description, IN_PROCESS, replace)
    _plugin_names.discard(name)


def registered_in_process() -> list[tuple[str, type[BaseLearner], str]]:
    """``(name, cls, description)`` of every learner :func:`register_learner` added, for worker
    processes to register again."""
    return [
        (name, entry.cls, entry.description)
        for name, entry in LEARNERS.items()
        if entry.origin == IN_PROCESS
    ]


def _description_of(cls: type) -> str:
    """The first line of the class's own docstring ("" without one)."""
    doc = cls.__doc__
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def load_plugins(*, reload: bool = False) -> dict[str, str]:
    """Register the learners of the installed entry points of :data:`ENTRY_POINT_GROUP`.

    Runs once per process unless ``reload`` (which first forgets the learners and errors of the
    previous load, then looks at ``sys.path`` afresh). An entry point that fails to import, names
    something that breaks the learner contract, has no docstring line to describe it, or clashes
    with a registered name is skipped with a :class:`PluginWarning`.

    Returns:
        entry-point name -> ``"module:attribute (from distribution version): why"`` for each
        one not registered (empty when all loaded).
    """
    global _plugins_loaded
    if _plugins_loaded and not reload:
        return dict(_plugin_errors)
    if reload:
        importlib.invalidate_caches()
        for name in _plugin_names:
            LEARNERS.pop(name, None)
        _plugin_names.clear()
        _plugin_errors.clear()
    _plugins_loaded = True
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for point in sorted(points, key=lambda p: p.name):
        dist = point.dist
        origin = f"{dist.name} {dist.version}" if dist is not None else "an unnamed distribution"
        try:
            cls = point.load()
        except Exception as error:  # noqa: BLE001 (third-party import code: report, keep going)
            _plugin_failed(point, origin, f"import failed: {type(error).__name__}: {error}")
            continue
        try:
            check_learner_class(cls)
            description = _description_of(cls)
            if not description:
                raise ValueError(
                    f"{cls.__qualname__} has no docstring: its first line is the "
                    "description `bpl list` shows"
                )
            _add(point.name, cls, description, origin, replace=False)
        except (TypeError, ValueError) as error:
            _plugin_failed(point, origin, str(error))
            continue
        _plugin_names.add(point.name)
    return dict(_plugin_errors)


def _plugin_failed(point: importlib.metadata.EntryPoint, origin: str, reason: str) -> None:
    message = f"{point.value} (from {origin}): {reason}"
    _plugin_errors[point.name] = message
    warnings.warn(
        f"learner entry point {point.name!r} not registered: {message}", PluginWarning, stacklevel=2
    )


def plugin_errors() -> dict[str, str]:
    """Entry-point name -> why it was not registered (after loading the entry points)."""
    return load_plugins()


def learner_entries() -> dict[str, LearnerEntry]:
    """Every registered learner by name (built-in, in-process and entry points)."""
    load_plugins()
    return dict(LEARNERS)


def get_learner(name: str) -> type[BaseLearner]:
    """The learner class registered as ``name`` (see :func:`learner_entries`)."""
    load_plugins()
    try:
        return LEARNERS[name].cls
    except (KeyError, TypeError):
        raise ValueError(f"unknown learner {name!r}; choose one of {sorted(LEARNERS)}") from None
