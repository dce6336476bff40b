"""The part every recurrent learner shares: env plumbing, core + readout, optimisers, predict.

A recurrent learner (BP(lambda), BPTT, truncated BPTT, DNI, no synthetic gradient, RTRL) reads a
supervised sequence task one token at a time. Per batch of sequences, :meth:`_run_episode` does::

    obs = env.reset()                      # B sequences in lock-step
    self._begin_sequences(B)
    for each token:
        prediction = self._forward(x_t)    # advance the recurrent state, predict y_t
        obs, ..., info = env.step(prediction)
        self._learn_step(loss_grad, final)   # loss_grad = dL_t/dprediction; the rule
    self._end_sequences()                  # e.g. apply the accumulated update

A batch ends on the step where every sub-env terminates or, with a ``stream=True`` env (which
never terminates), where ``info["sequence_end"]`` marks the boundary; the next batch starts with
``env.reset()`` either way, so each batch starts from the zero state.

Subclasses implement ``_learn_step``; the other hooks have defaults that most learners keep
(``_begin_sequences`` starts from the zero state and zeroes the gradients; ``_forward``
advances the core by ``core.step``, keeping ``self._state``, ``self._cache`` and
``self._hidden``; ``_end_sequences`` applies the accumulated update in ``update="sequence"``
mode). Everything else lives here once. The loss gradient handed to ``_learn_step`` is that of
the batch-mean loss (docs/algorithm.md#optimiser-and-scaling-details): ``loss.gradient(ŷ, y) / B``
on scored steps and zero elsewhere (None on a token no sequence scores), computed with the same
:mod:`bpl_envs.losses` function whose value the env paid as reward. The hooks run under
``torch.no_grad()`` (the learners differentiate by hand); callbacks run outside it.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import BaseLearner, make_env
from agents.cores import RecurrentCore
from agents.cores.factory import (
    CORE_DEFAULTS,
    check_saved_core,
    core_name,
    core_settings,
    learner_core,
)
from agents.finite_watch import FiniteWatch
from agents.learner_envs import as_vector_env, sequence_ended, task_spec_of
from bpl_envs.checks import check_int, check_non_negative
from bpl_envs.losses import NATS_PER_BIT, get_loss
from bpl_envs.task_spec import TaskSpec

__all__ = ["SequenceLearner", "grad_of", "sequence_ended", "task_spec_of"]

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-9
DTYPES = {"float32": torch.float32, "float64": torch.float64}
UPDATE_MODES = ("sequence", "step")
WATCH_LIMIT = 4096
"""Learning quantities the finite watch keeps before :meth:`SequenceLearner._watch` checks them
mid-batch (bounded memory on long sequences)."""


def grad_of(parameter: torch.Tensor) -> torch.Tensor:
    """The gradient buffer of a trainable parameter (allocated by ``_zero_grads``)."""
    if parameter.grad is None:
        raise RuntimeError("the gradient buffers are allocated by _zero_grads(); call it first")
    return parameter.grad


LearnerEnv = str | gym.Env | gym.vector.VectorEnv | TaskSpec
"""What a recurrent learner's ``env`` may be: an env id, an env, a vector env, or a
:class:`~bpl_envs.TaskSpec` (predict only)."""


class SequenceLearner(BaseLearner):
    """Shared base of the recurrent learners.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        core: ``"rnn"``, ``"lstm"`` (state [h, c]) or ``"gru"``, or a core instance (e.g.
            ``agents.cores.FunctionalCore(cell)`` around any torch cell): the learner trains a
            deep copy of it, ``self.core``, and the five arguments below must then be left at
            their defaults or agree with it (see :mod:`agents.cores.factory`).
        hidden_size: H, the number of hidden units (of every layer).
        activation: ``"tanh"`` or ``"identity"`` (RNN only).
        num_layers: L >= 1 stacked layers (state [s^1, ..., s^L]; the readout reads layer L).
        recurrent_init: ``"uniform"`` (U(-1/sqrt(H), 1/sqrt(H)) as torch) or ``"orthogonal"``
            (each gate's block of W_hh a random orthogonal matrix).
        spectral_radius: None, or r > 0: each gate's block of W_hh rescaled to spectral radius r.
        lr_core, lr_readout: Adam learning rates (betas (0.9, 0.98), eps 1e-9).
        update: ``"sequence"`` accumulates over each batch of sequences and applies once at its end;
            ``"step"`` applies after every token.
        n_envs: number of parallel sequences when ``env`` is an id.
        dtype: ``"float32"`` or ``"float64"``.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        seed: seeds parameter initialisation and the env's first reset.
        verbose: 0 silent, 1 logs a table per batch to stdout.
    """

    def __init__(
        self,
        env: LearnerEnv,
        *,
        core: str | RecurrentCore = "rnn",
        hidden_size: int = 30,
        activation: str = "tanh",
        num_layers: int = 1,
        recurrent_init: str = "uniform",
        spectral_radius: float | None = None,
        lr_core: float = 1e-3,
        lr_readout: float = 1e-3,
        update: str = "sequence",
        n_envs: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        if update not in UPDATE_MODES:
            raise ValueError(f"update must be one of {UPDATE_MODES}, got {update!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.lr_core = check_non_negative("lr_core", lr_core)
        self.lr_readout = check_non_negative("lr_readout", lr_readout)
        self.update, self.n_envs, self.dtype_name = update, n_envs, dtype
        self.dtype, self.device = DTYPES[dtype], torch.device(device)
        vector_env = None
        if isinstance(env, TaskSpec):
            self.task = env
        else:
            vector_env = as_vector_env(make_env(env, n_envs))
            self.task = task_spec_of(vector_env)
        self.loss = get_loss(self.task.loss)
        super().__init__(vector_env, seed=seed, verbose=verbose)

        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.core = learner_core(
                core,
                self.task.input_size,
                hidden_size=hidden_size,
                activation=activation,
                num_layers=num_layers,
                recurrent_init=recurrent_init,
                spectral_radius=spectral_radius,
            )
            self.core_kind = core_name(self.core)  # a kind, or what a core instance is
            settings = {**CORE_DEFAULTS, **core_settings(self.core)}  # an instance's own
            self.hidden_size: int = settings["hidden_size"]
            self.activation: str = settings["activation"]
            self.num_layers: int = settings["num_layers"]
            self.recurrent_init: str = settings["recurrent_init"]
            self.spectral_radius: float | None = settings["spectral_radius"]
            self.readout = torch.nn.Linear(self.hidden_size, self.task.output_size)
            self._build_extra_modules()
        for module in self._modules().values():
            module.to(device=self.device, dtype=self.dtype)
        self._optimizers = self._make_optimizers()

    # ------------------------------------------------------------------ construction hooks
    def _build_extra_modules(self) -> None:
        """Create modules beyond core and readout (e.g. a synthesiser); seeded like them."""

    def _modules(self) -> dict[str, torch.nn.Module]:
        """Every module whose parameters are learned or saved, by name."""
        return {"core": self.core, "readout": self.readout}

    def _learning_rates(self) -> dict[str, float]:
        """Adam learning rate of each module in :meth:`_modules`."""
        return {"core": self.lr_core, "readout": self.lr_readout}

    def _trainable_parameters(self, name: str) -> list[torch.Tensor]:
        """The parameters of module ``name`` that its optimiser moves."""
        return list(self._modules()[name].parameters())

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            name: torch.optim.Adam(
                self._trainable_parameters(name), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS
            )
            for name, lr in self._learning_rates().items()
        }

    def set_env(self, env) -> None:
        env = as_vector_env(make_env(env, self.n_envs))
        task = task_spec_of(env)
        for field in ("input_size", "output_size", "loss"):
            if getattr(task, field) != getattr(self.task, field):
                raise ValueError(
                    f"env's task has {field}={getattr(task, field)!r} but this learner was built "
                    f"for {field}={getattr(self.task, field)!r}"
                )
        super().set_env(env)

    # ----------------------------------------------------------------------- the loop
    def _run_episode(self) -> bool:
        env = self.env
        obs, _ = env.reset(seed=self._next_seed())
        batch_size = env.num_envs
        self.task = task_spec_of(env)
        self._finite_watch = FiniteWatch()
        self._begin_sequences(batch_size)
        self._scored_tokens = 0  # tokens on which some sequence is scored
        keep_going, step, losses, scored_steps, correct = True, 0, 0.0, 0, 0
        while True:
            with torch.no_grad():  # the learner's work; callbacks run outside
                x = torch.as_tensor(obs, dtype=self.dtype, device=self.device)
                prediction = self._forward(x)
                action = prediction.to("cpu", torch.float32).numpy()
                if not np.isfinite(action).all():
                    self._raise_non_finite(step, "prediction")
                obs, _, terminated, truncated, info = env.step(action)
                if "final_info" in info:  # AutoresetMode.SAME_STEP: the terminal step's info
                    info = info["final_info"]
                ended = sequence_ended(terminated, truncated, info)
                final = bool(ended.all())
                if ended.any() and not final:
                    raise RuntimeError(
                        f"sub-envs ended at different steps ({ended.tolist()}); recurrent "
                        "learners need the sequences of a batch in lock-step, as the bpl/ envs "
                        "provide"
                    )
                scored = np.asarray(info["scored"], dtype=bool)
                self._token_index = step
                self._scored_tokens += bool(scored.any())
                if scored.any():
                    target = torch.as_tensor(info["target"], dtype=self.dtype, device=self.device)
                    scored_t = torch.as_tensor(scored, dtype=self.dtype, device=self.device)
                    loss_grad = self.loss.gradient(prediction, target)
                    self._learn_step(loss_grad * (scored_t / batch_size).unsqueeze(-1), final)
                    losses += float(np.asarray(info["loss"])[scored].sum())
                    scored_steps += int(scored.sum())
                    if self.task.loss == "ce":
                        hits = action.argmax(-1) == np.asarray(info["target"]).argmax(-1)
                        correct += int(hits[scored].sum())
                else:  # no loss at this token: l_t = 0, nothing to differentiate
                    self._learn_step(None, final)
                step += 1
                if final:  # the batch's update lands before callbacks see its last step
                    self._check_finite()
                    self._end_sequences()
            keep_going = self._on_env_step(batch_size, episode_done=final)
            if final or not keep_going:
                break
        self._record_metrics(losses, scored_steps, correct, step)
        return keep_going

    def _record_metrics(self, losses, scored_steps, correct, steps) -> None:
        if scored_steps:
            mean_loss = losses / scored_steps
            self.logger.record("train/loss", mean_loss)
            if self.task.loss == "bce":
                self.logger.record("train/loss_bits", mean_loss / NATS_PER_BIT)
            if self.task.loss == "ce":
                self.logger.record("train/accuracy", correct / scored_steps)
        self.logger.record("train/sequence_length", steps)

    def _watch(self, *tensors: torch.Tensor | None) -> None:
        """Keep this token's learning quantities (None entries skipped) for the finite check,
        which :meth:`_check_finite` makes once per batch (every token with ``update="step"``,
        and every ``WATCH_LIMIT`` quantities of a long sequence): the hot path never waits for
        the device."""
        self._finite_watch.watch(self._token_index, *tensors)
        if len(self._finite_watch) >= WATCH_LIMIT:
            self._check_finite()

    def _watch_tokens(self, first: int, witnesses: torch.Tensor) -> None:
        """Like :meth:`_watch` for quantities of several tokens computed at once: ``witnesses``
        (n,) are finite where the quantities of the tokens first, ..., first + n - 1 were."""
        self._finite_watch.watch_tokens(first, witnesses)

    def _raise_non_finite(self, step: int, what: str) -> None:
        raise FloatingPointError(
            f"{type(self).__name__}: non-finite {what} at step {step} of the sequences "
            f"(env timestep {self.num_timesteps}); learning stopped. Lower the learning rates "
            "(or sg_weight)."
        )

    def _check_finite(self) -> None:
        """Stop with an error naming the first token whose learning quantities were NaN/inf
        (those watched since the last check)."""
        first = self._finite_watch.first_non_finite()
        if first is not None:
            self._raise_non_finite(first, "loss gradient or update")

    # ----------------------------------------------------------------- learner hooks
    def _begin_sequences(self, batch_size: int) -> None:
        """Start a new batch of sequences: the zero state (B, state_size) and zeroed gradients
        (subclasses add their traces)."""
        self._state = self.core.initial_state(batch_size)
        self._zero_grads()  # (with update="step", again before every token's update)
        if self.lr_core > 0:  # zeroed in place from now on: the same tensors all batch
            self._core_grads = [grad_of(parameter) for parameter in self.core.parameters()]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Advance the state with tokens x (B, input_size); return predictions (B, output_size).

        Keeps the new state ``self._state`` (B, state_size), the step's cache ``self._cache``
        (for the core's analytic derivatives) and the hidden units ``self._hidden`` (B, H).
        """
        self._state, self._cache = self.core.step(x, self._state)
        self._hidden = self.core.hidden(self._state)
        return self.readout(self._hidden)

    @abstractmethod
    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:
        """Learn from the step just taken (called under ``torch.no_grad()``).

        Args:
            loss_grad: d(batch-mean loss)/d prediction, (B, output_size), zero in the rows of
                unscored sequences; None when no sequence is scored at this token (l_t = 0).
            final: True on the last token of the sequences.
        """

    def _end_sequences(self) -> None:
        """Called after the last token of a batch: in ``update="sequence"`` mode, apply the
        update accumulated over the batch."""
        if self.update == "sequence":
            self._optimizer_step()

    # ---------------------------------------------------------------- optimiser helpers
    def _learning_modules(self) -> list[str]:
        """Names of the modules with a learning rate > 0 (frozen ones are skipped entirely)."""
        return [name for name, lr in self._learning_rates().items() if lr > 0]

    def _zero_grads(self) -> None:
        for name in self._learning_modules():
            for parameter in self._trainable_parameters(name):
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                else:
                    parameter.grad.zero_()

    def _optimizer_step(self) -> None:
        for name in self._learning_modules():
            self._optimizers[name].step()

    # ------------------------------------------- forward-mode helpers (no autograd in the loop)
    def _immediate_gradient(self, loss_grad: torch.Tensor | None) -> torch.Tensor:
        """Accumulate the readout's gradient and return l_t = dL_t/ds_t, (B, state_size).

        Uses the hidden units of the last ``_forward`` (``self._hidden``); l_t is zero outside
        the state's hidden columns (e.g. the LSTM's cell part, the lower layers of a stack), and
        all of it when ``loss_grad`` is None (no loss at this token).
        """
        if loss_grad is None:
            return torch.zeros_like(self._state)
        if self.lr_readout > 0:
            grad_of(self.readout.weight).addmm_(loss_grad.T, self._hidden)
            grad_of(self.readout.bias).add_(loss_grad.sum(0))
        return self.core.state_gradient(loss_grad @ self.readout.weight)

    def _local_core_update(self, cache, signal: torch.Tensor) -> None:
        """Accumulate signal . (ds_t/dW)_local (one step, no propagation through time)."""
        if self.lr_core > 0:
            torch._foreach_add_(self._core_grads, self.core.local_vjp(cache, signal))

    # ------------------------------------------------------------------------ predict
    def initial_state(self, batch_size: int) -> np.ndarray:
        """The recurrent state at the start of a sequence, (B, state_size), as numpy."""
        return np.zeros((batch_size, self.core.state_size), dtype=np.float32)

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,  # noqa: ARG002 (SB3 signature; predictions are deterministic)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predict the target of the current token and advance the recurrent state.

        Follows SB3's recurrent-policy signature, so ``evaluate_policy`` and ``EvalCallback``
        work: feed each token with the state returned for the previous one.

        Args:
            observation: one token (input_size,) or a batch (B, input_size).
            state: the previous recurrent state (B, state_size); None starts new sequences.
            episode_start: (B,) bools; True resets that sequence's state to the initial one.
            deterministic: accepted for SB3 compatibility (predictions are deterministic).

        Returns:
            (prediction (B, output_size) or (output_size,), new state (B, state_size)).
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs[None] if single else obs
        if obs.ndim != 2 or obs.shape[1] != self.task.input_size:
            raise ValueError(
                f"observation must have shape ({self.task.input_size},) or "
                f"(B, {self.task.input_size}), got {np.shape(observation)}"
            )
        batch = obs.shape[0]
        state = self.initial_state(batch) if state is None else np.array(state, np.float32)
        if state.shape != (batch, self.core.state_size):
            raise ValueError(
                f"state must have shape ({batch}, {self.core.state_size}), got {state.shape}"
            )
        if episode_start is not None:
            state[np.asarray(episode_start, dtype=bool).reshape(batch)] = 0.0
        x = torch.as_tensor(obs, dtype=self.dtype, device=self.device)
        s = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        s = self.core(x, s)
        prediction = self.readout(self.core.hidden(s)).to("cpu", torch.float32).numpy()
        new_state = s.to("cpu", torch.float32).numpy()
        return (prediction[0] if single else prediction), new_state

    # -------------------------------------------------------------------- checkpoints
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "core": self.core_kind,
            **{name: getattr(self, name) for name in CORE_DEFAULTS},
            "lr_core": self.lr_core,
            "lr_readout": self.lr_readout,
            "update": self.update,
            "n_envs": self.n_envs,
            "dtype": self.dtype_name,
            "device": str(self.device),
            "seed": self.seed,
            "verbose": self.verbose,
        }

    def _rebuild_kwargs(self) -> dict[str, Any]:
        return {"task": dataclasses.asdict(self.task), "core": self.core_kind}

    @classmethod
    def _from_checkpoint(cls, env, hyperparameters, rebuild, overrides):
        saved_core = rebuild.get("core", hyperparameters["core"])  # older checkpoints: a kind
        check_saved_core(saved_core, overrides.get("core"), cls.__name__)
        saved = TaskSpec(**rebuild["task"])
        learner = cls(saved if env is None else env, **hyperparameters)
        differ = [
            f"{field} {getattr(saved, field)!r} (checkpoint) vs "
            f"{getattr(learner.task, field)!r} (env)"
            for field in ("input_size", "output_size", "loss")
            if getattr(saved, field) != getattr(learner.task, field)
        ]
        if differ:
            raise ValueError(
                f"the env given to {cls.__name__}.load does not fit the checkpoint: "
                + "; ".join(differ)
            )
        return learner

    def _get_state(self) -> dict[str, Any]:
        return {
            "modules": {name: m.state_dict() for name, m in self._modules().items()},
            "optimizers": {name: o.state_dict() for name, o in self._optimizers.items()},
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        for name, module in self._modules().items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in self._optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
