"""Sutton & Barto's random-walk Markov reward process, single and natively batched."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from bpl_envs.checks import check_int

__all__ = ["RandomWalkEnv", "RandomWalkVectorEnv", "random_walk_true_values"]

_RENDER_MODES = ["ansi", "rgb_array"]
_CELL = 16  # pixels per state in the rgb_array drawing
_CELL_COLOURS = {"-": (178, 24, 43), "+": (33, 102, 172), ".": (235, 235, 235), "@": (8, 8, 8)}


def _check_n_states(n_states: Any) -> int:
    n_states = check_int("n_states", n_states, minimum=1)
    if n_states % 2 == 0:
        raise ValueError(f"n_states must be an odd int >= 1, got {n_states!r}")
    return n_states


def _check_render_mode(render_mode: Any) -> None:
    if render_mode is not None and render_mode not in _RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {_RENDER_MODES}, got {render_mode!r}")


def random_walk_true_values(n_states: int) -> np.ndarray:
    """True state values of the walk with ``gamma = 1``: ``v(s) = 2s/(n+1) - 1``, 0 at terminals.

    Returns:
        A read-only float64 array of shape ``(n_states + 2,)`` indexed by state.
    """
    n_states = _check_n_states(n_states)
    values = 2.0 * np.arange(n_states + 2, dtype=np.float64) / (n_states + 1) - 1.0
    values[0] = values[-1] = 0.0
    values.flags.writeable = False
    return values


def _rms_error(values: Any, true_values: np.ndarray) -> float | np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] != true_values.shape[0]:
        raise ValueError(
            f"values must have shape (..., {true_values.shape[0]}) (one entry per state, terminals"
            f" included), got shape {values.shape}"
        )
    squared = (values[..., 1:-1] - true_values[1:-1]) ** 2
    rms = np.sqrt(squared.mean(axis=-1))
    return float(rms) if rms.ndim == 0 else rms


def _render_ansi(n_states: int, state: int) -> str:
    """One line: ``-``/``+`` the two ends (their reward), ``.`` a state, ``@`` the walker."""
    cells = ["-"] + ["."] * n_states + ["+"]
    cells[state] = "@"
    return "".join(cells)


def _render(n_states: int, state: int, render_mode: str) -> str | np.ndarray:
    """The ``ansi`` line, or for ``rgb_array`` the same cells as a uint8 ``(16, 16 (n + 2), 3)``
    image: red left end, blue right end, light grey states, black walker."""
    line = _render_ansi(n_states, state)
    if render_mode == "ansi":
        return line
    colours = np.array([_CELL_COLOURS[cell] for cell in line], dtype=np.uint8)
    image = np.broadcast_to(colours[None, :, None, :], (_CELL, len(line), _CELL, 3))
    image = image.reshape(_CELL, len(line) * _CELL, 3).copy()
    image[:, ::_CELL] = 255  # a white line between cells
    return image


class RandomWalkEnv(gym.Env[np.int64, np.int64]):
    """Sutton & Barto's random walk (Examples 6.2 and 7.1, Chapter 12): a Markov reward process.

    ## Description

    States ``0 .. n_states + 1`` lie on a line. ``0`` and ``n_states + 1`` are terminal; the
    walker starts in the centre and moves one state left or right with probability 1/2 at every
    step, whatever the action. It is the classic benchmark for TD(lambda) value prediction.

    ## Action Space

    ``Discrete(1)``: the single action ``0``, which is ignored (the process has no choices).
    Any other action raises ``ValueError``.

    ## Observation Space

    ``Discrete(n_states + 2)``: the index of the current state, ``np.int64``. On the last step of
    an episode it is the terminal index (``0`` or ``n_states + 1``).

    ## Rewards

    -1 on entering the left terminal (state ``0``), +1 on entering the right terminal
    (state ``n_states + 1``), 0 on every other transition. With ``gamma = 1`` the true value of
    state ``s`` is ``2 s / (n_states + 1) - 1`` (``(s - 10) / 10`` for 19 states); see
    :attr:`true_values` and :meth:`rms_error`.

    ## Starting State

    The centre, ``(n_states + 1) // 2``.

    ## Episode End

    ``terminated`` when the walker reaches either end; it never truncates (episodes end with
    probability 1; the expected length from the centre is ``((n_states + 1) / 2) ** 2`` steps).
    Stepping a finished episode raises ``RuntimeError``: call ``reset()``.

    ## Information

    ``info`` is empty.

    ## Arguments

    ```python
    import gymnasium as gym
    import bpl_envs  # noqa: F401

    env = gym.make("bpl/RandomWalk-v0", n_states=19, render_mode="ansi")
    vec_env = gym.make_vec("bpl/RandomWalk-v0", num_envs=100, n_states=19)
    ```

    - ``n_states``: number of non-terminal states, an odd int >= 1 (default 19).
    - ``render_mode``: ``None``, ``"ansi"`` (a one-line text drawing of the walk) or
      ``"rgb_array"`` (the same cells as a uint8 image, 16 pixels per state).

    ## Vector Environment

    :class:`RandomWalkVectorEnv` steps ``num_envs`` walks at once in numpy and produces exactly
    the stream of ``SyncVectorEnv`` over single envs seeded ``seed + i``, for every autoreset mode.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": _RENDER_MODES, "render_fps": 4}

    def __init__(self, n_states: int = 19, render_mode: str | None = None) -> None:
        self.n_states = _check_n_states(n_states)
        _check_render_mode(render_mode)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(self.n_states + 2)
        self.action_space = spaces.Discrete(1)
        self.true_values = random_walk_true_values(self.n_states)
        self._start = (self.n_states + 1) // 2
        self._state: int | None = None
        self._terminated = False

    def rms_error(self, values: Any) -> float | np.ndarray:
        """Root-mean-square error of ``values`` against :attr:`true_values` over non-terminals.

        Args:
            values: array-like of shape ``(..., n_states + 2)``, one value per state.

        Returns:
            A float for one value vector, else an array of shape ``values.shape[:-1]``.
        """
        return _rms_error(values, self.true_values)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        """Start a new episode in the centre. ``options`` must be ``None`` or empty."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"options takes no keys for RandomWalkEnv, got {options!r}")
        self._state = self._start
        self._terminated = False
        return np.int64(self._state), {}

    def step(self, action: Any) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        """Move one state left or right with probability 1/2 (``action`` must be 0)."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (the only action of Discrete(1)), got {action!r}")
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._terminated:
            raise RuntimeError("the episode has terminated; call reset() before step()")
        self._state += 1 if self.np_random.random() < 0.5 else -1
        self._terminated = self._state in (0, self.n_states + 1)
        reward = float(self._state == self.n_states + 1) - float(self._state == 0)
        return np.int64(self._state), reward, self._terminated, False, {}

    def render(self) -> str | np.ndarray | None:
        """The walk as one line of text (``"ansi"``) or as an image (``"rgb_array"``)."""
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; create the env with "
                'render_mode="ansi" or "rgb_array" to draw the walk.'
            )
            return None
        if self._state is None:
            raise RuntimeError("call reset() before render()")
        return _render(self.n_states, self._state, self.render_mode)


class RandomWalkVectorEnv(VectorEnv):
    """``num_envs`` independent random walks stepped together in numpy.

    Identical stream to ``SyncVectorEnv([lambda: RandomWalkEnv(n_states)] * num_envs,
    autoreset_mode=autoreset_mode)``: sub-env ``i`` draws its moves from its own Generator,
    seeded ``seed + i`` by ``reset(seed=seed)`` (``np_random`` is the tuple of them), and the
    observations, rewards, terminations, truncations and infos (including ``final_obs`` /
    ``final_info`` and their ``_key`` masks under ``AutoresetMode.SAME_STEP``) are the same.

    Autoreset modes (``metadata["autoreset_mode"]``):

    - ``NEXT_STEP`` (default): the step after a termination resets that sub-env (observation =
      start, reward 0, not terminated) and ignores its action.
    - ``SAME_STEP``: a terminating sub-env is reset at once; its terminal observation is in
      ``info["final_obs"]``.
    - ``DISABLED``: finished sub-envs must be reset with
      ``reset(options={"reset_mask": mask})`` before stepping again, else ``RuntimeError``.

    Args:
        num_envs: number of walks, an int >= 1.
        n_states: number of non-terminal states per walk, an odd int >= 1.
        autoreset_mode: an :class:`~gymnasium.vector.AutoresetMode` or its string value.
        render_mode: ``None`` or ``"ansi"``; ``render()`` returns one line per sub-env.
    """

    def __init__(
        self,
        num_envs: int = 1,
        n_states: int = 19,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ) -> None:
        num_envs = check_int("num_envs", num_envs, minimum=1)
        allowed_modes = [mode.value for mode in AutoresetMode]
        if autoreset_mode not in list(AutoresetMode) + allowed_modes:
            raise ValueError(
                f"autoreset_mode must be an AutoresetMode or one of {allowed_modes}, "
                f"got {autoreset_mode!r}"
            )
        _check_render_mode(render_mode)
        self.num_envs = int(num_envs)
        self.n_states = _check_n_states(n_states)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.render_mode = render_mode
        self.metadata = {
            "render_modes": _RENDER_MODES,
            "render_fps": 4,
            "autoreset_mode": self.autoreset_mode,
        }
        self.single_observation_space = spaces.Discrete(self.n_states + 2)
        self.single_action_space = spaces.Discrete(1)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.true_values = random_walk_true_values(self.n_states)
        self._start = (self.n_states + 1) // 2
        self._generators: list[np.random.Generator | None] = [None] * self.num_envs
        self._seeds: list[int | None] = [None] * self.num_envs
        self._states: np.ndarray | None = None
        self._finished = np.zeros(self.num_envs, dtype=np.bool_)

    def rms_error(self, values: Any) -> float | np.ndarray:
        """RMS error over non-terminals; ``values`` of shape ``(..., n_states + 2)``."""
        return _rms_error(values, self.true_values)

    # A tuple per sub-env where VectorEnv declares one value, as Gymnasium's SyncVectorEnv does.
    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """The sub-envs' Generators (created unseeded on first use)."""
        generators = []
        for i, generator in enumerate(self._generators):
            if generator is None:
                generator, self._seeds[i] = seeding.np_random()
                self._generators[i] = generator
            generators.append(generator)
        return tuple(generators)

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:  # type: ignore[override]
        """The seed of each sub-env's Generator."""
        self.np_random  # noqa: B018  (creates missing Generators and their seeds)
        return tuple(self._seeds)

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env, or those in ``options["reset_mask"]`` (bool array (num_envs,)).

        ``seed``: ``None`` (keep the Generators), an int (sub-env ``i`` gets ``seed + i``) or a
        list of ``num_envs`` ints or ``None``.
        """
        seeds = self._seed_list(seed)
        options = dict(options or {})
        mask = self._reset_mask(options.pop("reset_mask", None))
        if options:
            raise ValueError(
                f"options takes only 'reset_mask' for RandomWalkVectorEnv, got {options!r}"
            )
        if self._states is None:
            if not mask.all():
                raise ValueError("the first reset() must reset every sub-env (no reset_mask)")
            self._states = np.full(self.num_envs, self._start, dtype=np.int64)
        for i in np.flatnonzero(mask):
            if seeds[i] is not None or self._generators[i] is None:
                self._generators[i], self._seeds[i] = seeding.np_random(seeds[i])
        self._states[mask] = self._start
        self._finished[mask] = False
        return self._states.copy(), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every walk; ``actions`` is an int array of ``num_envs`` zeros."""
        if not self.action_space.contains(np.asarray(actions)):
            raise ValueError(
                f"actions must be an int array of shape ({self.num_envs},) holding 0 (the only "
                f"action of each sub-env), got {actions!r}"
            )
        if self._states is None:
            raise RuntimeError("call reset() before step()")
        restarting = np.zeros(self.num_envs, dtype=np.bool_)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            restarting = self._finished
        elif self.autoreset_mode == AutoresetMode.DISABLED and self._finished.any():
            raise RuntimeError(
                f"sub-envs {np.flatnonzero(self._finished).tolist()} have terminated; with "
                "AutoresetMode.DISABLED reset them with reset(options={'reset_mask': mask})"
            )
        moving = ~restarting
        generators = self.np_random
        draws = np.array([generators[i].random() for i in np.flatnonzero(moving)])
        states = self._states
        states[moving] += np.where(draws < 0.5, 1, -1)
        states[restarting] = self._start
        right_end = moving & (states == self.n_states + 1)
        left_end = moving & (states == 0)
        rewards = right_end.astype(np.float64) - left_end.astype(np.float64)
        terminations = right_end | left_end
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.SAME_STEP and terminations.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(terminations):
                final_obs[i] = np.int64(states[i])
            infos = {
                "final_obs": final_obs,
                "_final_obs": terminations.copy(),
                "final_info": {},
                "_final_info": terminations.copy(),
            }
            states[terminations] = self._start
            self._finished = np.zeros(self.num_envs, dtype=np.bool_)
        else:
            self._finished = terminations.copy()
        return states.copy(), rewards, terminations, truncations, infos

    def render(self) -> tuple[str | np.ndarray, ...] | None:
        """One line of text (``"ansi"``) or one image (``"rgb_array"``) per sub-env."""
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; create the env with "
                'render_mode="ansi" or "rgb_array" to draw the walks.'
            )
            return None
        if self._states is None:
            raise RuntimeError("call reset() before render()")
        return tuple(_render(self.n_states, int(s), self.render_mode) for s in self._states)

    def _seed_list(self, seed: Any) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, (list, tuple)) and len(seed) == self.num_envs:
            return list(seed)
        raise ValueError(
            f"seed must be None, an int or a list of {self.num_envs} ints or None, got {seed!r}"
        )

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=np.bool_)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            raise TypeError(f"options['reset_mask'] must be a numpy bool array, got {mask!r}")
        if mask.shape != (self.num_envs,) or not mask.any():
            raise ValueError(
                f"options['reset_mask'] must have shape ({self.num_envs},) and at least one "
                f"True, got {mask!r}"
            )
        return mask
