"""TD(lambda) value prediction with linear features: the reference half of BP(lambda).

Per transition (S, R, S') of an episode, with V(s) = w·x(s) and V(terminal) = 0:

    δ = R + γ V(S') − V(S)                          traces.td_error
    z = γλ z ⊕ x(S)        (z = 0 at an episode start; ⊕ set by ``trace``)
    w = w + α δ z                                    traces.trace_increment

``trace="true_online"`` is van Seijen & Sutton's true online TD(λ) (dutch trace and
:func:`agents.traces.true_online_td_update`). All trace arithmetic lives in :mod:`agents.traces`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents import traces
from agents.base import BaseLearner, EnvLike, make_env
from bpl_envs.checks import check_fraction, check_non_negative

__all__ = ["TRACES", "TDLambda"]

TRACES = ("accumulate", "replacing", "dutch", "true_online")
"""The trace kinds :class:`TDLambda` accepts."""

FeatureMap = Callable[[Any], Any]


class TDLambda(BaseLearner):
    """Linear TD(λ) prediction of state values ``V(s) = w·x(s)`` on a Markov reward process.

    The env must have a single action (``Discrete(1)``, e.g. ``bpl/RandomWalk-v0``): the agent
    predicts the value of the process, it does not choose. Weights start at 0.

    Args:
        env: a single ``gymnasium.Env`` or an env id; None when rebuilt by :meth:`load` only
            to predict.
        lam: λ in [0, 1], the trace decay (0 is TD(0), 1 is Monte Carlo for accumulate traces).
        alpha: step size α >= 0.
        gamma: discount γ in [0, 1] (default 1).
        trace: ``"accumulate"`` (default), ``"replacing"`` (binary features only),
            ``"dutch"`` (dutch trace with the ordinary update) or ``"true_online"``.
        seed: seeds the env's first reset (the agent itself draws no random numbers).
        features: the feature map ``x``. None: one-hot over a ``Discrete`` observation space
            (tabular). A 2-D array ``(n_observations, n_features)``: a feature table for a
            ``Discrete`` space. A callable ``obs -> 1-D array``: for any space (for a
            ``Discrete`` space it is tabulated once, so checkpoints hold the table; otherwise
            :meth:`load` needs it again as ``features=``).
        device: torch device of the weights (float64).
        verbose: 0 silent, 1 logs to stdout.

    Attributes:
        weights: ``(n_features,)`` float64 tensor ``w``.
        n_observations: size of the ``Discrete`` observation space (None for other spaces).
        n_features: length of ``x(s)``.
        observation_shape: shape of one observation (``()`` for a ``Discrete`` space).

    :meth:`predict` answers like an SB3 policy (the action, always 0), so SB3's
    ``evaluate_policy`` and ``EvalCallback`` run on the process; the value estimates are
    :meth:`predict_values` and :attr:`values`.
    """

    def __init__(
        self,
        env: str | EnvLike | None,
        lam: float,
        alpha: float,
        gamma: float = 1.0,
        trace: str = "accumulate",
        seed: int | None = None,
        features: FeatureMap | np.ndarray | torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        verbose: int = 0,
    ) -> None:
        self.lam = check_fraction("lam", lam)
        self.alpha = check_non_negative("alpha", alpha)
        self.gamma = check_fraction("gamma", gamma)
        if not isinstance(trace, str) or trace not in TRACES:
            raise ValueError(f"trace must be one of {list(TRACES)}, got {trace!r}")
        self.trace = trace
        self.device = torch.device(device)
        self._feature_map = features if callable(features) else None
        self._table = None if features is None or callable(features) else self._as_table(features)
        self.n_observations: int | None = None
        self.n_features: int | None = None
        self.observation_shape: tuple[int, ...] = ()
        self.weights: torch.Tensor | None = None
        super().__init__(env, seed=seed, verbose=verbose)

    def _weights(self) -> torch.Tensor:
        if self.weights is None:
            raise RuntimeError("no weights yet: give the learner an env or load a checkpoint")
        return self.weights

    # ------------------------------------------------------------------------ set-up
    def set_env(self, env: str | EnvLike) -> None:
        """Attach a single-action env; its observation space must fit the feature map."""
        env = make_env(env)
        if isinstance(env, gym.vector.VectorEnv):
            raise TypeError("TDLambda learns from a single gymnasium.Env, got a VectorEnv")
        space = env.action_space
        if not (isinstance(space, gym.spaces.Discrete) and space.n == 1):
            raise ValueError(
                "TDLambda predicts the values of a Markov reward process: the env's action "
                f"space must be Discrete(1), got {space}"
            )
        self._configure(env.observation_space)
        self.env = env

    def _as_table(self, features: Any) -> torch.Tensor:
        table = torch.as_tensor(np.asarray(features, dtype=np.float64), device=self.device)
        if table.dim() != 2 or not bool(torch.isfinite(table).all()):
            raise ValueError(
                "features must be None, a callable or a finite 2-D array (n_observations, "
                f"n_features), got shape {tuple(table.shape)}"
            )
        return table

    def _configure(self, space: gym.Space) -> None:
        """Set the feature map for ``space`` and allocate (or check) the weights."""
        if isinstance(space, gym.spaces.Discrete):
            if space.start != 0:
                raise ValueError(f"a Discrete observation space must start at 0, got {space}")
            n_observations = int(space.n)
            if self._feature_map is not None:
                self._table = self._as_table(
                    [self._feature_map(np.int64(s)) for s in range(n_observations)]
                )
                self._feature_map = None
            if self._table is not None and self._table.shape[0] != n_observations:
                raise ValueError(
                    f"features has {self._table.shape[0]} rows but the observation space has "
                    f"{n_observations} observations"
                )
            n_features = n_observations if self._table is None else self._table.shape[1]
        elif self._feature_map is None:
            raise ValueError(
                f"the observation space {space} is not Discrete: pass features=a callable "
                "mapping an observation to a 1-D feature vector"
            )
        else:
            n_observations, n_features = None, self._features_of(space.sample()).shape[1]
        if self.trace == "replacing" and self._table is not None:
            if not bool(((self._table == 0) | (self._table == 1)).all()):
                raise ValueError("trace='replacing' needs binary features (0/1 entries)")
        if self.weights is not None and (n_observations, n_features) != (
            self.n_observations,
            self.n_features,
        ):
            raise ValueError(
                f"the env has {n_observations} observations and {n_features} features but this "
                f"learner was built for {self.n_observations} and {self.n_features}"
            )
        self.n_observations, self.n_features = n_observations, n_features
        self.observation_shape = tuple(space.shape or ())
        if self.weights is None:
            self.weights = torch.zeros(n_features, dtype=torch.float64, device=self.device)

    def _features_of(self, obs: Any) -> torch.Tensor:
        """``x(obs)`` as a ``(1, n_features)`` float64 tensor."""
        if self.n_observations is not None:
            index = _discrete_index(obs, self.n_observations)
            if self._table is not None:
                return self._table[index].unsqueeze(0)
            x = torch.zeros(1, self.n_observations, dtype=torch.float64, device=self.device)
            x[0, index] = 1.0
            return x
        if self._feature_map is None:
            raise RuntimeError("no feature map: the observation space is not Discrete")
        x = torch.as_tensor(
            np.asarray(self._feature_map(obs), dtype=np.float64), device=self.device
        )
        if x.dim() != 1 or (self.n_features is not None and x.shape[0] != self.n_features):
            raise ValueError(
                f"the feature map must return a 1-D vector of {self.n_features or 'n'} features, "
                f"got shape {tuple(x.shape)}"
            )
        return x.unsqueeze(0)

    # ------------------------------------------------------------------------ predictions
    def predict(
        self,
        observation: Any,
        state: Any = None,  # noqa: ARG002 (SB3 signature)
        episode_start: Any = None,  # noqa: ARG002 (SB3 signature)
        deterministic: bool = True,  # noqa: ARG002 (SB3 signature)
    ) -> tuple[np.ndarray, None]:
        """The action for each observation, SB3-shaped: ``(actions, None)``.

        A Markov reward process has a single action (``Discrete(1)``), so every action is 0:
        what SB3's ``evaluate_policy`` and ``EvalCallback`` need to run the process. The
        observations are checked as in :meth:`predict_values`, which gives the values.

        Args:
            observation: one observation, or a batch of them (leading axis).
            state, episode_start, deterministic: accepted for SB3 compatibility; unused.

        Returns:
            ``(actions, None)``: int64 zeros, shape ``()`` for one observation, ``(n,)`` for a
            batch of n.
        """
        return np.zeros(self.predict_values(observation).shape, dtype=np.int64), None

    def predict_values(self, observation: Any) -> np.ndarray:
        """Value estimate(s) ``V(obs) = w·x(obs)``.

        Args:
            observation: one observation (shape :attr:`observation_shape`) or a batch of them
                with a leading axis; for a ``Discrete`` space any int array of states.

        Returns:
            float64 array: shape ``()`` for one observation, ``(n,)`` for a batch of n (for a
            ``Discrete`` space: the shape of ``observation``).
        """
        if self.n_observations is not None:
            return np.asarray(self.values[_discrete_index(observation, self.n_observations)])
        observations = np.asarray(observation)
        single = observations.ndim == len(self.observation_shape)
        batch = observations[None] if single else observations
        if batch.shape[1:] != self.observation_shape:
            raise ValueError(
                f"observation must have shape {self.observation_shape} or (n, "
                f"*{self.observation_shape}), got {observations.shape}"
            )
        weights = self._weights()
        values = np.array([float(self._features_of(obs)[0] @ weights) for obs in batch])
        return values[0].reshape(()) if single else values

    @property
    def values(self) -> np.ndarray:
        """``V(s)`` for every state of a ``Discrete`` observation space, ``(n_observations,)``."""
        if self.n_observations is None:
            raise TypeError("values needs a Discrete observation space; use predict_values(obs)")
        if self._table is None:
            return self._weights().cpu().numpy().copy()
        return (self._table @ self._weights()).cpu().numpy()

    # ------------------------------------------------------------------------ learning
    def _run_episode(self) -> bool:
        obs, _ = self.env.reset(seed=self._next_seed())
        x = self._features_of(obs)
        w = self._weights().unsqueeze(0)  # (1, n_features): the traces functions are batched
        z = torch.zeros_like(w)  # a fresh trace per episode
        v_old = torch.zeros(1, dtype=torch.float64, device=self.device)
        trace_discount = self.gamma * self.lam
        length, episode_return, squared_errors = 0, 0.0, 0.0
        while True:
            obs, reward, terminated, truncated, _ = self.env.step(0)
            x_next = self._features_of(obs)
            v, v_next = x @ w[0], x_next @ w[0]
            delta = traces.td_error(
                torch.tensor([float(reward)], dtype=torch.float64, device=self.device),
                v_next,
                v,
                0.0 if terminated else self.gamma,
            )
            if self.trace == "accumulate":
                z = traces.accumulating_trace(z, x, trace_discount)
            elif self.trace == "replacing":
                z = traces.replacing_trace(z, x, trace_discount)
            else:
                z = traces.dutch_trace(z, x, trace_discount, self.alpha)
            if self.trace == "true_online":
                w = traces.true_online_td_update(w, z, x, delta, v, v_old, self.alpha)
                v_old = v_next
            else:
                w = w + self.alpha * traces.trace_increment(delta, z)
            self.weights = w[0]
            x = x_next
            length += 1
            episode_return += float(reward)
            squared_errors += float(delta[0]) ** 2
            done = terminated or truncated
            if done:
                self._record_episode(length, episode_return, squared_errors)
            if not self._on_env_step(1, episode_done=done):
                return False
            if done:
                return True

    def _record_episode(self, length: int, episode_return: float, squared_errors: float) -> None:
        self.logger.record("rollout/ep_len", length)
        self.logger.record("rollout/ep_return", episode_return)
        self.logger.record("train/td_error_rms", (squared_errors / length) ** 0.5)
        rms_error = _find_method(self.env, "rms_error")
        if rms_error is not None and self.n_observations is not None:
            self.logger.record("train/value_rms_error", float(rms_error(self.values)))

    # ------------------------------------------------------------------------ checkpoints
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "trace": self.trace,
            "seed": self.seed,
            "verbose": self.verbose,
            "device": str(self.device),
            "features": None if self._table is None else self._table.cpu(),
        }

    def _rebuild_kwargs(self) -> dict[str, Any]:
        return {
            "n_observations": self.n_observations,
            "n_features": self.n_features,
            "observation_shape": list(self.observation_shape),
            "callable_features": self._feature_map is not None,
        }

    def _get_state(self) -> dict[str, Any]:
        return {"weights": self._weights().cpu().clone()}

    def _set_state(self, state: dict[str, Any]) -> None:
        weights = state["weights"]
        if weights.shape != (self.n_features,):
            raise ValueError(
                f"weights of shape {tuple(weights.shape)} do not fit {self.n_features} features"
            )
        self.weights = weights.to(dtype=torch.float64, device=self.device).clone()

    @classmethod
    def _from_checkpoint(
        cls,
        env: str | EnvLike | None,
        hyperparameters: dict[str, Any],
        rebuild: dict[str, Any],
        overrides: dict[str, Any],
    ) -> TDLambda:
        """``features`` must be given again (``TDLambda.load(path, env, features=f)``) for
        learners built with a callable feature map: checkpoints cannot hold callables."""
        features = overrides.get("features")
        if rebuild["callable_features"]:
            if features is None:
                raise ValueError(
                    "this checkpoint was made with a callable feature map, which checkpoints "
                    "cannot hold: load it with TDLambda.load(path, env, features=the_same_map)"
                )
        elif features is not None:
            raise ValueError(
                "features= is only for checkpoints made with a callable feature "
                "map on a non-Discrete observation space; this one holds its own"
            )
        learner = cls(env, **hyperparameters)
        if env is None:
            learner.n_observations = rebuild["n_observations"]
            learner.n_features = rebuild["n_features"]
            learner.observation_shape = tuple(rebuild["observation_shape"])
        return learner


def _discrete_index(obs: Any, n: int) -> Any:
    """``obs`` as an index (or int array of indices) into ``range(n)``, checked."""
    index = np.asarray(obs)
    if (
        not np.issubdtype(index.dtype, np.integer)
        or index.size == 0
        or (index.min() < 0 or index.max() >= n)
    ):
        raise ValueError(
            f"observation must be an int in [0, {n}) (or an array of them), got {obs!r}"
        )
    return int(index) if index.ndim == 0 else index


def _find_method(env: EnvLike, name: str) -> Any:
    try:
        return env.get_wrapper_attr(name)  # type: ignore[union-attr]  # else AttributeError
    except AttributeError:
        return None
