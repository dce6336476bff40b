"""Stream your own sequences (arrays) as a batched sequence-task env any learner here can use."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from bpl_envs.checks import check_int
from bpl_envs.losses import get_loss
from bpl_envs.task_spec import TaskSpec

__all__ = ["SequenceReplayVectorEnv"]


class SequenceReplayVectorEnv(gym.vector.VectorEnv):
    """Replays a fixed set of sequences, ``num_envs`` of them in lock-step per batch.

    Each ``reset`` serves the next ``num_envs`` sequences (in order, starting a new pass after
    the last one, or drawn at random without replacement within a pass when
    ``order="random"``); ``step`` pays
    ``reward = -loss`` on scored steps exactly as the ``bpl/`` task envs do and reports
    ``info["target"]``, ``info["scored"]``, ``info["loss"]`` and ``info["sequence_end"]``.
    Autoreset is disabled: call ``reset()`` after the last token.

    Args:
        inputs: (N, T, input_size) tokens.
        targets: (N, T, output_size) targets (one-hot for ``"ce"``).
        loss: ``"mse"``, ``"bce"`` or ``"ce"``.
        scored: (T,) or (N, T) booleans marking the steps that carry a loss (default: all).
        num_envs: sequences per batch (default: all N); must divide into N.
        order: ``"sequential"`` or ``"random"``.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        loss: str,
        scored: np.ndarray | None = None,
        num_envs: int | None = None,
        order: str = "sequential",
    ) -> None:
        inputs = np.asarray(inputs, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.float32)
        if inputs.ndim != 3 or targets.ndim != 3 or inputs.shape[:2] != targets.shape[:2]:
            raise ValueError(
                "inputs and targets must have shapes (N, T, input_size) and (N, T, output_size) "
                f"with the same N and T, got {inputs.shape} and {targets.shape}"
            )
        n_sequences, steps = inputs.shape[:2]
        scored = np.ones(steps, bool) if scored is None else np.asarray(scored, dtype=bool)
        if scored.shape not in ((steps,), (n_sequences, steps)):
            raise ValueError(
                f"scored must have shape ({steps},) or {inputs.shape[:2]}, got {scored.shape}"
            )
        num_envs = n_sequences if num_envs is None else num_envs
        num_envs = check_int("num_envs", num_envs, minimum=1, maximum=n_sequences)
        if n_sequences % num_envs:
            raise ValueError(
                f"num_envs must be an int in [1, {n_sequences}] that divides the "
                f"{n_sequences} sequences (each pass serves all of them), got "
                f"{num_envs!r}"
            )
        if order not in ("sequential", "random"):
            raise ValueError(f"order must be 'sequential' or 'random', got {order!r}")
        self.inputs, self.targets, self.order = inputs, targets, order
        self.scored = np.broadcast_to(scored, inputs.shape[:2])
        self.num_envs = num_envs
        self.task = TaskSpec(inputs.shape[2], targets.shape[2], loss, "all", steps)
        self._loss = get_loss(loss)
        bound = float(np.abs(inputs).max()) if inputs.size else 1.0
        self.single_observation_space = gym.spaces.Box(
            -bound, bound, (inputs.shape[2],), np.float32
        )
        self.single_action_space = gym.spaces.Box(-1, 1, (targets.shape[2],), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._order = np.arange(n_sequences)
        self._cursor = 0
        self._batch: np.ndarray | None = None
        self._order_rng = np.random.default_rng()

    # A tuple where VectorEnv declares one Generator, as Gymnasium's SyncVectorEnv does.
    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator]:  # type: ignore[override]
        """The generator that orders sequences (one, shared by the batch)."""
        return (self._order_rng,)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(f"SequenceReplayVectorEnv takes no reset options, got {options}")
        if seed is not None:
            self._order_rng = np.random.default_rng(seed)
            self._cursor = len(self._order)  # start a fresh pass
        if self._cursor + self.num_envs > len(self._order):
            self._order = (
                self._order_rng.permutation(len(self._order))
                if self.order == "random"
                else np.arange(len(self._order))
            )
            self._cursor = 0
        self._batch = self._order[self._cursor : self._cursor + self.num_envs]
        self._cursor += self.num_envs
        self._t = 0
        return self.inputs[self._batch, 0].copy(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._batch is None or self._t >= self.inputs.shape[1]:
            raise RuntimeError("call reset() before stepping (and after the last token)")
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {self.action_space.shape}, got {actions.shape}"
            )
        t, batch = self._t, self._batch
        target, scored = self.targets[batch, t], self.scored[batch, t]
        loss = np.where(scored, self._loss.value(actions.astype(np.float64), target), 0.0)
        self._t += 1
        final = self._t == self.inputs.shape[1]
        obs = np.zeros_like(self.inputs[batch, 0]) if final else self.inputs[batch, self._t].copy()
        ones = np.ones(self.num_envs, dtype=bool)
        info = {
            "target": target,
            "_target": ones,
            "scored": scored.copy(),
            "_scored": ones,
            "loss": loss,
            "_loss": ones,
            "sequence_end": np.full(self.num_envs, final),
            "_sequence_end": ones,
        }
        return (obs, -loss, np.full(self.num_envs, final), np.zeros(self.num_envs, bool), info)
