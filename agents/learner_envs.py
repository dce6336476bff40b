"""How a recurrent learner reads its envs: the task an env describes, where a batch of sequences
ends, and a single env as a batch of one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from bpl_envs.task_spec import TaskSpec

__all__ = ["as_vector_env", "sequence_ended", "task_spec_of"]


def task_spec_of(env: Any) -> TaskSpec:
    """The :class:`~bpl_envs.TaskSpec` a (vector) env exposes as ``task``."""
    for getter in (lambda: env.task, lambda: env.get_attr("task")[0]):
        try:
            task = getter()
        except AttributeError:
            continue
        if isinstance(task, TaskSpec):
            return task
    raise ValueError(
        f"{env} does not describe its task: a recurrent learner needs an env with a `task` "
        "attribute (a bpl_envs.TaskSpec giving input/output sizes and the loss), such as the "
        "bpl/ envs"
    )


def sequence_ended(terminated: Any, truncated: Any, info: dict) -> np.ndarray:
    """Which sub-envs just answered the last token of a sequence: bool ``(B,)``.

    True where the episode ended (``terminated`` or ``truncated``) or where a ``stream=True``
    env, which never terminates, marks the boundary with ``info["sequence_end"]``.
    """
    ended = np.logical_or(terminated, truncated)
    if "sequence_end" in info:
        ended = np.logical_or(ended, info["sequence_end"])
    return ended


def as_vector_env(env: Any) -> gym.vector.VectorEnv:
    """A single env becomes a batch of one (autoreset off: the learner resets between batches)."""
    if isinstance(env, gym.vector.VectorEnv):
        return env
    return gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=AutoresetMode.DISABLED)
