"""From a :class:`~agents.experiments.run_config.RunConfig` to objects: the env, the learner
(new, or loaded from a checkpoint) and the test split a trained learner is scored on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.evaluation import evaluate_sequences, last_step_targets
from agents.experiments import hyperparameters as hp
from agents.experiments.run_config import RunConfig, is_sequence_learner, learner_class

__all__ = [
    "build_env",
    "build_learner",
    "env_arguments",
    "load_learner",
    "test_metrics",
    "test_split",
]


def _entry_class(env_id: str) -> type:
    """The env class registered as ``env_id``."""
    if env_id not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("bpl/"))
        raise ValueError(f"unknown env id {env_id!r}; registered bpl ids: {known}")
    entry_point = gym.spec(env_id).entry_point
    creator = entry_point if not isinstance(entry_point, str) else load_env_creator(entry_point)
    if not isinstance(creator, type):
        raise ValueError(
            f"{env_id} is registered with {creator!r}, not an env class: its "
            "arguments cannot be checked"
        )
    return creator


def env_arguments(env_id: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert env keyword arguments against the env class's constructor.

    A mapping given for an argument annotated with a class of :mod:`bpl_envs` (e.g.
    ``curriculum: CopyRepeatCurriculum | None``) is passed to that class's constructor, checked
    the same way; other values are converted to the argument's annotation.

    Raises:
        ValueError: unknown env id (listing the registered ones) or argument (listing the valid
            ones), or a value that does not fit.
    """
    env_class = _entry_class(env_id)
    known = hp.hyperparameters_of(env_class)
    known.pop("render_mode", None)
    names = {str(k).replace("-", "_"): v for k, v in given.items()}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown env argument(s) {unknown} for {env_id}; valid: {sorted(known)}")
    converted = {}
    for name, value in names.items():
        annotation = known[name].annotation
        classes = [
            m
            for m in hp.union_members(annotation)
            if isinstance(m, type)
            and m not in (bool, int, float, str, type(None))
            and m.__module__.startswith("bpl_envs")
        ]
        if isinstance(value, Mapping) and classes:
            converted[name] = classes[0](**hp.resolve(classes[0], value, f"{env_id} {name}"))
        else:
            converted[name] = hp.convert(name, value, annotation, env_id)
    return converted


def build_env(env_id: str, env_kwargs: Mapping[str, Any], num_envs: int, vector: bool):
    """``gym.make_vec(env_id, num_envs, **kwargs)`` for recurrent learners (the sub-envs are the
    batch), ``gym.make(env_id, **kwargs)`` for single-env learners (``num_envs`` must be 1)."""
    kwargs = env_arguments(env_id, env_kwargs)
    if vector:
        return gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    if num_envs != 1:
        raise ValueError(
            f"this learner learns from a single env; num_envs must be 1, got {num_envs}"
        )
    return gym.make(env_id, **kwargs)


def _config_env(config: RunConfig, cls: type):
    return build_env(config.env, config.env_kwargs, config.num_envs, is_sequence_learner(cls))


def build_learner(config: RunConfig, verbose: int = 0):
    """Validate the configuration and build the env and the learner (nothing is written).

    Raises:
        ValueError: unknown learner, env id, env argument or hyper-parameter (each listing the
            valid choices), or a value the learner refuses.
    """
    cls = learner_class(config.learner)
    kwargs = hp.resolve(cls, config.hyperparameters, owner=f"learner {config.learner!r}")
    env = _config_env(config, cls)
    if "n_envs" in hp.constructor_parameters(cls):
        kwargs["n_envs"] = config.num_envs
    return cls(env, seed=config.seed, verbose=verbose, **kwargs)


def load_learner(config: RunConfig, checkpoint: str | os.PathLike):
    """The learner of ``config`` as saved in ``checkpoint``, on a new env of ``config`` whose
    random state (and curriculum) the checkpoint restores: ready to continue learning."""
    cls = learner_class(config.learner)
    return cls.load(checkpoint, env=_config_env(config, cls))


def test_split(env_id: str, env_kwargs: Mapping[str, Any]):
    """The whole test split of a classification env scored at its last step, e.g.
    ``bpl/SequentialDigits-v0``: ``(inputs (N, T, n_in), targets (N, T, n_out), scored (T,))``,
    or None for envs without one (no ``split`` argument or no ``dataset()``)."""
    if "split" not in hp.hyperparameters_of(_entry_class(env_id)):
        return None
    env = gym.make(env_id, **{**env_arguments(env_id, env_kwargs), "split": "test"})
    unwrapped: Any = env.unwrapped  # a bpl sequence env: its task and dataset()
    task = unwrapped.task
    if not hasattr(unwrapped, "dataset") or task.loss != "ce" or task.scoring != "last":
        return None
    inputs, labels = unwrapped.dataset()
    steps = inputs.shape[1]
    return inputs, last_step_targets(labels, task.output_size, steps), np.arange(steps) == steps - 1


def test_metrics(learner, config: RunConfig) -> dict[str, float]:
    """``{"test/loss", "test/accuracy"}`` of the learner on the env's test split ({} if the env
    has none), by :func:`agents.evaluation.evaluate_sequences`."""
    split = test_split(config.env, config.env_kwargs)
    if split is None:
        return {}
    scores = evaluate_sequences(learner, *split)
    return {f"test/{key}": float(scores[key]) for key in ("loss", "accuracy") if key in scores}
