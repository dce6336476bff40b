"""Stable-Baselines3's ``VecEnv`` over a Gymnasium vector env, so SB3 algorithms get native speed.

SB3 cannot step a ``gymnasium.vector.VectorEnv``: it has its own ``VecEnv`` interface, and
``make_vec_env`` builds a ``DummyVecEnv`` that steps one single env after the other in Python.
:class:`NativeVecEnv` gives SB3 one of the natively batched ``bpl/`` vector envs (or any
Gymnasium vector env that autoresets on the next step or not at all) behind SB3's conventions::

    from sb3_contrib import RecurrentPPO
    from bpl_envs.sb3 import make_native_vec_env

    vec_env = make_native_vec_env("bpl/CopyRepeat-v0", n_envs=64, seed=0)
    RecurrentPPO("MlpLstmPolicy", vec_env).learn(20_000)

What SB3 sees is what ``DummyVecEnv`` of single envs shows it for the same seeds (tested step by
step): observations, float32 rewards, ``dones = terminated | truncated``, one info dict per
sub-env with ``"TimeLimit.truncated"`` and, on the last step of an episode, the
``"terminal_observation"``; a finished sub-env is reset within the same ``step`` (its
``reset`` info in ``reset_infos``). ``seed``/``set_options`` apply at the next ``reset``, as in
SB3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

__all__ = ["NativeVecEnv", "make_native_vec_env"]

SUPPORTED_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)


def split_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's batched info dict -> one dict per sub-env, as a ``DummyVecEnv`` holds them.

    Key ``k`` goes to sub-env i where the mask ``infos["_k"]`` is True (everywhere without a
    mask); 1-D arrays become Python scalars (as a single ``bpl/`` env reports them), rows of
    higher-dimensional arrays stay arrays, and nested dicts are split the same way.
    """
    keys, columns, partial = [], [], []
    for key, values in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        if isinstance(values, dict):
            column = split_infos(values, num_envs)
        elif isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype != object:
            column = values.tolist()
        else:
            column = list(values)
        mask = infos.get(f"_{key}")
        if mask is None or mask.all():
            keys.append(key)
            columns.append(column)
        else:
            partial.append((key, column, np.flatnonzero(mask)))
    per_env = [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]
    if not keys:
        per_env = [{} for _ in range(num_envs)]
    for key, column, indices in partial:
        for i in indices:
            per_env[i][key] = column[i]
    return per_env


class NativeVecEnv(VecEnv):
    """SB3's ``VecEnv`` over a Gymnasium ``VectorEnv``, e.g. ``gym.make_vec("bpl/...", n)``.

    Args:
        vector_env: a ``gymnasium.vector.VectorEnv`` whose ``metadata["autoreset_mode"]`` is
            ``NEXT_STEP`` (Gymnasium's default and the ``bpl/`` envs') or ``DISABLED``. A
            sub-env that ends is reset by ``vector_env.reset()`` when all have ended (the
            ``bpl/`` sequence tasks end together), else by
            ``reset(options={"reset_mask": ended})``, which the env must then support.

    ``get_attr``, ``set_attr`` and ``env_method`` act on ``vector_env``, which holds every
    sub-env: ``get_attr(name)`` is its attribute once per requested index,
    ``env_method(name, ...)`` calls its method once and returns the result once per requested
    index; both ``set_attr`` and ``env_method`` act on all sub-envs together, so their
    ``indices`` must be None or all of them. ``env_is_wrapped`` is False (no sub-env objects
    to wrap; wrap this ``VecEnv`` in ``VecMonitor`` for episode statistics).

    Raises:
        TypeError: ``vector_env`` is not a Gymnasium ``VectorEnv`` (a single env, or an SB3
            ``VecEnv``).
        ValueError: its autoreset mode is ``SAME_STEP``.
    """

    def __init__(self, vector_env: gym.vector.VectorEnv):
        if not isinstance(vector_env, gym.vector.VectorEnv):
            raise TypeError(
                "vector_env must be a gymnasium.vector.VectorEnv, e.g. "
                f"gym.make_vec('bpl/CopyRepeat-v0', num_envs=64), got {type(vector_env).__name__}"
            )
        mode = AutoresetMode(vector_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode not in SUPPORTED_MODES:
            raise ValueError(
                f"vector_env has autoreset_mode {mode.value!r}; NativeVecEnv needs one of "
                f"{[m.value for m in SUPPORTED_MODES]} (it resets finished sub-envs itself, "
                "within the step, as SB3 expects)"
            )
        self.vector_env = vector_env
        self._actions: np.ndarray | None = None
        super().__init__(
            vector_env.num_envs,
            vector_env.single_observation_space,
            vector_env.single_action_space,
        )

    # --------------------------------------------------------------------------- stepping
    def reset(self) -> np.ndarray:
        """Reset every sub-env with the seeds of :meth:`seed` and the options of
        :meth:`set_options` (both used once), like ``DummyVecEnv``."""
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0]
        if any(o != options for o in self._options):
            raise ValueError(
                "a vector env resets every sub-env with the same options; set_options got "
                f"different ones per sub-env: {self._options}"
            )
        observations, infos = self.vector_env.reset(
            seed=seeds,  # type: ignore[arg-type]  # a list per sub-env, as Gymnasium's own take
            options=options or None,
        )
        self.reset_infos = split_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-env; reset the finished ones (their last observation goes to
        ``infos[i]["terminal_observation"]``)."""
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        observations, rewards, terminated, truncated, batched = self.vector_env.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        time_limit = np.logical_and(truncated, ~terminated)
        infos = split_infos({**batched, "TimeLimit.truncated": time_limit}, self.num_envs)
        if dones.any():
            ended = np.flatnonzero(dones)
            for i in ended:
                infos[i]["terminal_observation"] = observations[i].copy()
            if dones.all():
                observations, reset_batched = self.vector_env.reset()
            else:
                observations, reset_batched = self.vector_env.reset(options={"reset_mask": dones})
            reset_infos = split_infos(reset_batched, self.num_envs)
            for i in ended:
                self.reset_infos[i] = reset_infos[i]
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    # ------------------------------------------------------------------------ forwarding
    def _count(self, indices: VecEnvIndices) -> int:
        return len(list(self._get_indices(indices)))

    def _check_all(self, what: str, indices: VecEnvIndices) -> None:
        if indices is not None and sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"{what} acts on every sub-env of a vector env together: indices must be None "
                f"or all of range({self.num_envs}), got {indices!r}"
            )

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector env's attribute ``attr_name``, once per requested index."""
        return [getattr(self.vector_env, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set ``attr_name`` on the vector env (indices: None or all sub-envs)."""
        self._check_all("set_attr", indices)
        setattr(self.vector_env, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call the vector env's method once; its result, once per sub-env."""
        self._check_all("env_method", indices)
        result = getattr(self.vector_env, method_name)(*method_args, **method_kwargs)
        return [result] * self.num_envs

    def env_is_wrapped(
        self,
        wrapper_class: type[gym.Wrapper],  # noqa: ARG002 (SB3's VecEnv signature)
        indices: VecEnvIndices = None,
    ) -> list[bool]:
        """False for every requested index: a vector env has no sub-env objects to wrap."""
        return [False] * self._count(indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One RGB image per sub-env (``render_mode="rgb_array"``), as the vector env draws."""
        if self.render_mode != "rgb_array":
            raise ValueError(
                f"get_images needs render_mode='rgb_array', got {self.render_mode!r}; create the "
                "vector env with render_mode='rgb_array'"
            )
        images = self.vector_env.render()
        if images is None:
            raise RuntimeError(
                f"{type(self.vector_env).__name__}.render() returned None with "
                "render_mode='rgb_array'"
            )
        return [np.asarray(image) for image in images]


def make_native_vec_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    monitor: bool = True,
) -> VecEnv:
    """SB3's ``make_vec_env`` for a natively batched env: ``gym.make_vec`` behind
    :class:`NativeVecEnv`.

    Args:
        env_id: a registered id with a vector entry point, e.g. ``"bpl/CopyRepeat-v0"``.
        n_envs: number of sub-envs.
        seed: sub-env i is seeded ``seed + i`` at the first reset (None: fresh randomness).
        env_kwargs: keyword arguments of the env.
        monitor: wrap in SB3's ``VecMonitor`` (episode returns and lengths for the logs), as
            ``make_vec_env`` wraps each env in ``Monitor``.
    """
    vec_env: VecEnv = NativeVecEnv(gym.make_vec(env_id, num_envs=n_envs, **(env_kwargs or {})))
    if seed is not None:
        vec_env.seed(seed)
    return VecMonitor(vec_env) if monitor else vec_env
