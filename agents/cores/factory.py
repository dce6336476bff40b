"""Building cores by name, and the learners' ``core=`` argument (a name or a core instance).

A learner describes a built-in core by its hyper-parameters ``core`` (a kind), ``hidden_size``,
``activation``, ``num_layers``, ``recurrent_init`` and ``spectral_radius`` (:data:`CORE_DEFAULTS`),
or takes a core instance as ``core=``. An instance sets those hyper-parameters itself: each must
be left at its default or agree with it. A built-in instance (one of the kinds, stacked or not) is
saved in checkpoints by name and rebuilt on load; any other instance (a
:class:`~agents.cores.functional.FunctionalCore`, your own :class:`RecurrentCore` subclass) is
saved as its parameters only, and must be passed again to ``load`` as ``core=``.
"""

from __future__ import annotations

import copy
from typing import Any

from agents.cores.analytic import AnalyticCore
from agents.cores.base import RecurrentCore
from agents.cores.functional import FunctionalCore
from agents.cores.gru import GRUCore
from agents.cores.lstm import LSTMCore
from agents.cores.rnn import RNN_ACTIVATIONS, RNNCore
from agents.cores.stacked import StackedCore
from bpl_envs.checks import check_int

__all__ = [
    "CORE_DEFAULTS",
    "CORE_KINDS",
    "check_saved_core",
    "core_name",
    "core_settings",
    "learner_core",
    "make_core",
]

CORE_KINDS = ("rnn", "lstm", "gru")
_CLASSES = {"rnn": RNNCore, "lstm": LSTMCore, "gru": GRUCore}
CORE_DEFAULTS: dict[str, Any] = {
    "hidden_size": 30,
    "activation": "tanh",
    "num_layers": 1,
    "recurrent_init": "uniform",
    "spectral_radius": None,
}
"""The learners' defaults for the hyper-parameters that describe a built-in core."""


def make_core(
    kind: str,
    input_size: int,
    hidden_size: int,
    activation: str = "tanh",
    *,
    num_layers: int = 1,
    recurrent_init: str = "uniform",
    spectral_radius: float | None = None,
) -> RecurrentCore:
    """Build a core by name.

    Args:
        kind: "rnn", "lstm" or "gru".
        input_size: n_in.
        hidden_size: H (of every layer).
        activation: "tanh" or "identity" for the RNN; the LSTM and GRU accept only "tanh".
        num_layers: L >= 1; L > 1 builds a :class:`StackedCore` of L layers of ``kind``.
        recurrent_init: "uniform" or "orthogonal" (:mod:`agents.cores.initialisation`).
        spectral_radius: None, or r > 0 for each gate block of every layer's W_hh.
    """
    if kind not in CORE_KINDS:
        raise ValueError(f"kind must be one of {CORE_KINDS}, got {kind!r}")
    if kind != "rnn" and activation != "tanh":
        raise ValueError(
            f"activation={activation!r} is not available for kind={kind!r} (its gates are fixed; "
            f"only 'tanh' is accepted); activations {RNN_ACTIVATIONS} are for kind='rnn'"
        )
    num_layers = check_int("num_layers", num_layers, minimum=1)

    def layer(layer_input_size: int) -> AnalyticCore:
        if kind == "rnn":
            return RNNCore(
                layer_input_size,
                hidden_size,
                activation,
                recurrent_init=recurrent_init,
                spectral_radius=spectral_radius,
            )
        return _CLASSES[kind](
            layer_input_size,
            hidden_size,
            recurrent_init=recurrent_init,
            spectral_radius=spectral_radius,
        )

    if num_layers == 1:
        return layer(input_size)
    return StackedCore([layer(input_size)] + [layer(hidden_size) for _ in range(num_layers - 1)])


def _built_in_layers(core: RecurrentCore) -> tuple[AnalyticCore, ...]:
    """The layers of a built-in core (one unless stacked), or () for any other core."""
    layers = core.stack() if type(core) is StackedCore else (core,)
    if all(type(layer) in _CLASSES.values() for layer in layers):
        return tuple(layer for layer in layers if isinstance(layer, AnalyticCore))
    return ()


def core_name(core: RecurrentCore) -> str:
    """The kind of a built-in core ("rnn", "lstm", "gru", stacked or not), else a description of
    the instance, e.g. ``"FunctionalCore(my_package.cells.LeakyCell)"``."""
    layers = _built_in_layers(core)
    if layers:
        return layers[0].kind
    target = core.cell if isinstance(core, FunctionalCore) else core
    name = f"{type(target).__module__}.{type(target).__qualname__}"
    return f"FunctionalCore({name})" if isinstance(core, FunctionalCore) else name


def core_settings(core: RecurrentCore) -> dict[str, Any]:
    """The learner hyper-parameters of :data:`CORE_DEFAULTS` that ``core`` determines."""
    settings: dict[str, Any] = {"hidden_size": core.hidden_size}
    layers = _built_in_layers(core)
    if layers:
        settings.update(
            activation=getattr(layers[0], "activation", "tanh"),
            num_layers=len(layers),
            recurrent_init=layers[0].recurrent_init,
            spectral_radius=layers[0].spectral_radius,
        )
    return settings


def learner_core(core: str | RecurrentCore, input_size: int, **settings: Any) -> RecurrentCore:
    """The core a learner trains: built by name from ``settings`` (the keys of
    :data:`CORE_DEFAULTS`), or a deep copy of the instance ``core`` after checking that it reads
    ``input_size`` inputs and that every setting is at its default or agrees with it."""
    allowed = f"one of {CORE_KINDS} or a RecurrentCore instance (e.g. FunctionalCore(cell))"
    if isinstance(core, str):
        if core not in CORE_KINDS:
            raise ValueError(f"core must be {allowed}, got {core!r}")
        return make_core(core, input_size, **settings)
    if not isinstance(core, RecurrentCore):
        raise TypeError(f"core must be {allowed}, got {type(core).__name__}")
    if core.input_size != input_size:
        raise ValueError(
            f"core reads input_size={core.input_size} inputs but the task's tokens have "
            f"{input_size}"
        )
    own = core_settings(core)
    for name, value in settings.items():
        if value != CORE_DEFAULTS[name] and value != own.get(name, CORE_DEFAULTS[name]):
            raise ValueError(
                f"{name}={value!r} conflicts with the core instance given ({core_name(core)}, "
                f"which sets {own}); with core=<instance>, leave {name} at its default "
                f"{CORE_DEFAULTS[name]!r}"
            )
    return copy.deepcopy(core)


def check_saved_core(saved: str, given: str | RecurrentCore | None, learner: str) -> None:
    """Before a checkpoint whose ``core`` hyper-parameter is ``saved`` is loaded: a core instance
    that is not built in must be passed again (``given``), and be the same kind of core."""
    if saved in CORE_KINDS:
        return
    if given is None:
        raise ValueError(
            f"this {learner} checkpoint's core is a {saved} instance, which a checkpoint cannot "
            f"rebuild: pass one again, e.g. {learner}.load(path, env, core=<the same core>); "
            "its saved parameters are then loaded into it"
        )
    got = given if isinstance(given, str) else core_name(given)
    if got != saved:
        raise ValueError(f"the checkpoint's core is {saved}, got core={got}")
