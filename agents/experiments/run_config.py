"""What defines a training run: :class:`RunConfig`, and the learner names it may use.

A run configuration is plain data (YAML or JSON: ``config.yaml`` and ``run.json`` of a run
folder hold one), validated when it is built; :meth:`RunConfig.resolved` also checks the
hyper-parameters against the learner's constructor and converts them to their types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from agents.base import BaseLearner
from agents.experiments import hyperparameters as hp
from agents.experiments.config import check_keys, load_config
from agents.registry import BUILT_IN, get_learner, learner_entries
from agents.sequence_learner import SequenceLearner

__all__ = ["RunConfig", "is_sequence_learner", "learner_class", "learner_names"]


def learner_names() -> dict[str, str]:
    """Registered learner name -> one-line description (naming the distribution or
    ``register_learner`` for a learner that is not built in)."""
    return {
        name: entry.description + ("" if entry.origin == BUILT_IN else f" [{entry.origin}]")
        for name, entry in learner_entries().items()
    }


def learner_class(name: str) -> type[BaseLearner]:
    """The learner class registered as ``name``; a ValueError lists the valid names."""
    return get_learner(name)


def is_sequence_learner(cls: type) -> bool:
    """Whether ``cls`` learns from a vector env whose sub-envs are the batch."""
    return issubclass(cls, SequenceLearner)


def _check_int(name: str, value: Any, minimum: int) -> int:
    try:
        number = hp.convert(name, value, int)
    except ValueError:
        hint = (
            f" (write it as {int(value)})"
            if isinstance(value, float) and value.is_integer()
            else ""
        )
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}{hint}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def _check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else _check_int(name, value, minimum)


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a training run (and rebuilds it for ``--resume``).

    Attributes:
        env: a registered env id, e.g. ``"bpl/SequentialDigits-v0"``.
        learner: a registered learner name (``bpl list``).
        env_kwargs: keyword arguments of the env (plain YAML data; a mapping given for an
            argument whose type is a class, e.g. the copy-repeat ``curriculum``, builds it).
        hyperparameters: the learner's constructor arguments.
        num_envs: parallel sequences B (a vector env of B sub-envs).
        steps: budget in env transitions (B per token), or None.
        updates: budget in batches of sequences, or None (exactly one budget is set).
        seed: seeds the learner's initialisation and the env.
        save_every: checkpoint after the first batch ending at or past each multiple of this
            many steps (None: only at the end).
        log_interval: print the metrics table to stdout every this many batches (the CSV and
            TensorBoard get every batch).
    """

    env: str
    learner: str
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 1
    steps: int | None = None
    updates: int | None = None
    seed: int = 0
    save_every: int | None = None
    log_interval: int = 10

    KEYS = (
        "env",
        "learner",
        "env_kwargs",
        "hyperparameters",
        "num_envs",
        "steps",
        "updates",
        "seed",
        "save_every",
        "log_interval",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.env, str):
            raise TypeError(f"env must be an env id (str), got {self.env!r}")
        if not isinstance(self.learner, str):
            raise TypeError(f"learner must be a learner name (str), got {self.learner!r}")
        for name in ("env_kwargs", "hyperparameters"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping, got {value!r}")
            else:
                setattr(self, name, dict(value))
        self.num_envs = _check_int("num_envs", self.num_envs, 1)
        self.steps = _check_optional_int("steps", self.steps, 1)
        self.updates = _check_optional_int("updates", self.updates, 1)
        if (self.steps is None) == (self.updates is None):
            raise ValueError(
                f"give exactly one budget, steps or updates (got steps={self.steps}, "
                f"updates={self.updates})"
            )
        self.seed = _check_int("seed", self.seed, 0)
        self.save_every = _check_optional_int("save_every", self.save_every, 1)
        self.log_interval = _check_int("log_interval", self.log_interval, 1)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> RunConfig:
        """Build from a mapping (a config file); unknown keys are refused."""
        check_keys(where, data, cls.KEYS, required=("env", "learner"))
        return cls(**dict(data))

    @classmethod
    def from_file(cls, name_or_path: str) -> tuple[RunConfig, list[str]]:
        """Build from a config file or preset; also return the sections it holds for other
        commands.

        Experiment presets hold a training run (the top level) plus an ``experiment:`` section
        that only ``bpl reproduce`` reads; its name is returned so that the caller can say that
        it is not used.
        """
        data = load_config(name_or_path)
        others = sorted(set(data) & {"experiment"})
        train = {k: v for k, v in data.items() if k not in others}
        return cls.from_mapping(train, where=str(name_or_path)), others

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    def resolved(self) -> RunConfig:
        """A copy whose hyper-parameters are checked against the learner and converted to
        their types (what run.json records)."""
        cls = learner_class(self.learner)
        owner = f"learner {self.learner!r}"
        return dataclasses.replace(
            self, hyperparameters=hp.resolve(cls, self.hyperparameters, owner)
        )

    def derive(
        self,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> RunConfig:
        """A copy with ``env_kwargs`` / ``hyperparameters`` merged into this one's (given keys
        win) and other fields replaced, e.g. ``derive(learner="bptt", seed=3)``."""
        return dataclasses.replace(
            self,
            env_kwargs={**self.env_kwargs, **(env_kwargs or {})},
            hyperparameters={**self.hyperparameters, **(hyperparameters or {})},
            **fields,
        )
