"""Any Gymnasium env whose ``info`` carries each step's target, as a bpl sequence task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bpl_envs.checks import check_int
from bpl_envs.losses import get_loss
from bpl_envs.sequence import as_prediction, prediction_space
from bpl_envs.task_spec import TaskSpec

__all__ = ["SupervisedTaskWrapper"]

ScoredRule = Callable[[Mapping[str, Any]], bool]


def _infer_output_size(loss: str, action_space: gym.Space) -> int:
    if loss == "ce" and isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if loss != "ce" and isinstance(action_space, spaces.Box):
        return int(np.prod(action_space.shape))
    raise ValueError(
        f"output_size cannot be inferred for loss={loss!r} from the wrapped env's action space "
        f"{action_space} (a Discrete(n) gives n classes for 'ce', a Box its size for 'mse'/"
        "'bce'); pass output_size=..."
    )


def _default_to_action(action_space: gym.Space, output_size: int) -> Callable[[np.ndarray], Any]:
    """argmax for a Discrete space, the prediction itself for a Box of the prediction's size."""
    if isinstance(action_space, spaces.Discrete):
        start = int(action_space.start)
        return lambda prediction: start + int(np.argmax(prediction))
    if isinstance(action_space, spaces.Box) and int(np.prod(action_space.shape)) == output_size:
        shape, dtype = action_space.shape, action_space.dtype
        return lambda prediction: prediction.reshape(shape).astype(dtype)
    raise ValueError(
        f"the wrapped env's action space {action_space} is neither Discrete nor a Box of "
        f"output_size={output_size} numbers; pass to_action=... (prediction -> action)"
    )


class SupervisedTaskWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turn a Gymnasium env whose ``info`` carries each step's target into a bpl sequence task.

    The wrapped env keeps its dynamics; the wrapper makes it look like the ``bpl/`` tasks, so
    every learner here trains on it: the observation is flattened to a float32 vector, the
    action is the learner's prediction (logits or values, ``Box(-1, 1, (output_size,))`` with
    nominal bounds), the reward is ``-loss`` on scored steps and 0.0 elsewhere, and ``info``
    gains the keys the learners read:

    - ``"target"``: float32 ``(output_size,)``, from ``info[target_key]``: an integer class
      becomes a one-hot vector for ``"ce"``; any other target is an array of ``output_size``
      numbers (a probability vector for ``"ce"``);
    - ``"scored"`` (bool), ``"loss"`` (float, 0.0 when not scored, evaluated in float64 by
      ``bpl_envs.get_loss(loss)``, the function the learners differentiate);
    - ``"sequence_end"`` (bool): the episode ended (terminated or truncated) or, with
      ``sequence_end_key``, that info key is true (NeuroGym's ``"new_trial"``: trials follow
      each other within one episode);
    - ``"wrapped_reward"``: the wrapped env's own reward.

    Like Gymnasium's own wrappers it records its arguments (``spec`` can rebuild it).
    The wrapped env's own info keys are kept (the keys above replace any of the same name).
    The wrapped env receives ``to_action(prediction)`` (by default the argmax class for a
    ``Discrete`` action space: the model's decision). ``env.task`` is the
    :class:`~bpl_envs.TaskSpec`.

    Recurrent learners run the sequences of a batch in lock-step, so a vector env of wrapped
    envs (``gym.vector.SyncVectorEnv``) needs sequences of one length; a single wrapped env
    (a batch of one) takes any.

    Args:
        env: the env; its observation space must be a ``Box``.
        target_key: the info key holding the target of the step just taken.
        loss: ``"mse"``, ``"bce"`` or ``"ce"``.
        scored: which steps carry a loss: ``"all"`` (default), ``"last"`` (the step where a
            sequence ends), the name of a bool info key, or a callable ``info -> bool`` (it
            sees the wrapped env's info).
        output_size: size of a prediction; None infers it from the wrapped action space
            (``Discrete(n)``: n classes for ``"ce"``; a ``Box``: its size for ``"mse"``/``"bce"``).
        to_action: ``prediction (output_size,) float64 -> action`` of the wrapped env; None:
            the argmax for a ``Discrete`` space, the prediction (reshaped, cast) for a ``Box``
            of ``output_size`` numbers.
        sequence_end_key: an info key whose truth ends a sequence within an episode, or None.
        sequence_length: the T the TaskSpec reports (learners read only the sizes and the loss;
            T documents the task); None takes ``env.spec.max_episode_steps``.

    Raises:
        TypeError: a wrong argument type (naming it).
        ValueError: an unknown loss, a size or action mapping that cannot be inferred, or no
            sequence length known.
        KeyError: at ``step``, the wrapped env's info lacks ``target_key`` (or the scored key).
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        target_key: str,
        loss: str,
        scored: str | ScoredRule = "all",
        output_size: int | None = None,
        to_action: Callable[[np.ndarray], Any] | None = None,
        sequence_end_key: str | None = None,
        sequence_length: int | None = None,
    ):
        if not isinstance(env, gym.Env):
            raise TypeError(f"env must be a gymnasium.Env, got {type(env).__name__}")
        gym.utils.RecordConstructorArgs.__init__(
            self,
            target_key=target_key,
            loss=loss,
            scored=scored,
            output_size=output_size,
            to_action=to_action,
            sequence_end_key=sequence_end_key,
            sequence_length=sequence_length,
        )
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.observation_space, spaces.Box):
            raise TypeError(
                f"the wrapped env's observation space must be a Box, got {env.observation_space}"
            )
        if not isinstance(target_key, str):
            raise TypeError(f"target_key must be a str (an info key), got {target_key!r}")
        self.target_key = target_key
        self.loss = get_loss(loss)
        if not (isinstance(scored, str) or callable(scored)):
            raise TypeError(
                f"scored must be 'all', 'last', an info key (str) or a callable info -> bool, "
                f"got {scored!r}"
            )
        self.scored = scored
        if sequence_end_key is not None and not isinstance(sequence_end_key, str):
            raise TypeError(f"sequence_end_key must be a str or None, got {sequence_end_key!r}")
        self.sequence_end_key = sequence_end_key
        if output_size is None:
            output_size = _infer_output_size(loss, env.action_space)
        self.output_size = check_int("output_size", output_size, minimum=1)
        if to_action is not None and not callable(to_action):
            raise TypeError(f"to_action must be a callable or None, got {to_action!r}")
        self.to_action = to_action or _default_to_action(env.action_space, self.output_size)
        if sequence_length is None:
            sequence_length = env.spec.max_episode_steps if env.spec is not None else None
            if sequence_length is None:
                raise ValueError(
                    "the wrapped env has no spec.max_episode_steps: pass sequence_length=... "
                    "(the sequence length the TaskSpec reports)"
                )
        self._sequence_length = check_int("sequence_length", sequence_length, minimum=1)
        box = env.observation_space
        self.observation_space = spaces.Box(
            box.low.astype(np.float32).ravel(),
            box.high.astype(np.float32).ravel(),
            dtype=np.float32,
        )
        self.action_space = prediction_space(self.output_size)
        scoring = self.scored if self.scored in ("all", "last") else "custom"
        self._task = TaskSpec(
            input_size=int(self.observation_space.shape[0]),
            output_size=self.output_size,
            loss=self.loss.name,
            scoring=scoring,
            sequence_length=self._sequence_length,
        )

    @property
    def task(self) -> TaskSpec:
        """What a learner needs to know: sizes, loss and scoring."""
        return self._task

    def _observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32).reshape(self.observation_space.shape)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the wrapped env; returns its first observation, flattened to float32."""
        observation, info = self.env.reset(seed=seed, options=options)
        return self._observation(observation), info

    def _target(self, info: Mapping[str, Any]) -> np.ndarray:
        if self.target_key not in info:
            raise KeyError(
                f"the wrapped env's info has no {self.target_key!r} (target_key); its keys are "
                f"{sorted(info)}"
            )
        value = np.asarray(info[self.target_key])
        if self.loss.name == "ce" and value.ndim == 0 and value.dtype.kind in "iu":
            if not 0 <= int(value) < self.output_size:
                raise ValueError(
                    f"info[{self.target_key!r}] = {int(value)} is not a class in "
                    f"[0, {self.output_size})"
                )
            target = np.zeros(self.output_size, dtype=np.float32)
            target[int(value)] = 1.0
            return target
        if value.size != self.output_size or value.dtype.kind not in "biuf":
            expected = f"{self.output_size} numbers"
            if self.loss.name == "ce":
                expected = f"an integer class in [0, {self.output_size}) or {expected}"
            raise ValueError(
                f"info[{self.target_key!r}] must be {expected}, got {info[self.target_key]!r}"
            )
        return value.astype(np.float32).reshape(self.output_size)

    def _is_scored(self, info: Mapping[str, Any], sequence_end: bool) -> bool:
        if self.scored == "all":
            return True
        if self.scored == "last":
            return sequence_end
        if callable(self.scored):
            return bool(self.scored(info))
        if self.scored not in info:
            raise KeyError(
                f"the wrapped env's info has no {self.scored!r} (the scored key); its keys are "
                f"{sorted(info)}"
            )
        return bool(info[self.scored])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Pass ``to_action(prediction)`` to the wrapped env and score the prediction."""
        prediction = as_prediction(action, (self.output_size,))
        observation, wrapped_reward, terminated, truncated, info = self.env.step(
            self.to_action(prediction)
        )
        target = self._target(info)
        sequence_end = bool(terminated or truncated)
        if self.sequence_end_key is not None:
            sequence_end = sequence_end or bool(info.get(self.sequence_end_key, False))
        scored = self._is_scored(info, sequence_end)
        loss = float(self.loss.value(prediction, target.astype(np.float64))) if scored else 0.0
        info = {
            **info,
            "target": target,
            "scored": scored,
            "loss": loss,
            "sequence_end": sequence_end,
            "wrapped_reward": wrapped_reward,
        }
        reward = -loss if scored else 0.0
        return self._observation(observation), reward, terminated, truncated, info
