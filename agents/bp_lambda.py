"""Accumulate BP(lambda): a recurrent core learning online from synthetic gradients that a small
network g(s; theta) learns with TD errors and eligibility traces (Pemberton & Costa, TMLR 2024).

Per token t (ALGORITHM.md §2-4; s_t the core's state, J_t = ds_t/ds_{t-1}, l_t = dL_t/ds_t of the
batch-mean loss, g_t = g(s_t) with g := 0 on the last token of a sequence):

    delta_{t-1} = (l_t + gamma g_t) J_t - g_{t-1}                    TD error of state t-1
    e_{t-1}     = gamma lambda J_{t-1} e_{t-2} + dg(s_{t-1})/dtheta    trace (the STORED J_{t-1})
    theta      += mean_b delta_{t-1} . e_{t-1}                       rescaled to norm <= 1
    W_core     += (l_t + beta g_t) . (ds_t/dW)_local                   one-step derivatives only

The TD error and the trace decay are the functions of :mod:`agents.traces` with the transition
operator J applied implicitly by the core (``core.vjp`` for u -> u J, ``core.jvp`` for e -> J e):
TD(lambda) is the special case J = 1 with a scalar value.
"""

from __future__ import annotations

from typing import Any

import torch

from agents import traces
from agents.base import check_fraction, check_non_negative
from agents.sequence_learner import SequenceLearner
from agents.synthesisers import make_synthesiser

__all__ = ["BPLambda"]


class BPLambda(SequenceLearner):
    """BP(lambda) learner with a Stable-Baselines3-shaped interface.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        core: ``"rnn"`` or ``"lstm"`` (the LSTM's state, synthesised and traced, is [h, c]).
        hidden_size: H.
        activation: ``"tanh"`` or ``"identity"`` (RNN only).
        lam: lambda in [0, 1]: 0 bootstraps one step ahead (DNI with n = 1), 1 learns the
            discounted BPTT future gradient without bootstrapping.
        gamma: discount in [0, 1] of future losses in the synthesised gradient.
        sg_weight: beta >= 0, the weight of the synthetic gradient in the core's learning signal.
        lr_core, lr_readout, lr_synth: Adam learning rates (betas (0.9, 0.98), eps 1e-9); 0 freezes.
        update: ``"sequence"`` (accumulate, apply once per batch of sequences, as the paper's
            experiments) or ``"step"`` (apply after every token: fully online).
        synth_hidden: None for a linear synthesiser, else the width of a one-hidden-layer MLP.
        synth_trace_parameters: for the MLP, ``"all"`` or ``"output"`` (only the output layer
            carries traces and learns).
        clip_synth_update: rescale each step's synthesiser increment to norm <= 1 per tensor.
        n_envs, dtype, device, seed, verbose: as :class:`~agents.sequence_learner.SequenceLearner`.

    Attributes:
        core, readout, synthesiser: the torch modules (inspect or replace them freely).
    """

    def __init__(
        self,
        env,
        *,
        core: str = "rnn",
        hidden_size: int = 30,
        activation: str = "tanh",
        lam: float = 1.0,
        gamma: float = 1.0,
        sg_weight: float = 1.0,
        lr_core: float = 1e-3,
        lr_readout: float = 1e-3,
        lr_synth: float = 1e-4,
        update: str = "sequence",
        synth_hidden: int | None = None,
        synth_trace_parameters: str = "all",
        clip_synth_update: bool = True,
        n_envs: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.lam = check_fraction("lam", lam)
        self.gamma = check_fraction("gamma", gamma)
        self.sg_weight = check_non_negative("sg_weight", sg_weight)
        self.lr_synth = check_non_negative("lr_synth", lr_synth)
        if not isinstance(clip_synth_update, bool):
            raise TypeError(f"clip_synth_update must be a bool, got {clip_synth_update!r}")
        self.synth_hidden = synth_hidden
        self.synth_trace_parameters = synth_trace_parameters
        self.clip_synth_update = clip_synth_update
        super().__init__(
            env,
            core=core,
            hidden_size=hidden_size,
            activation=activation,
            lr_core=lr_core,
            lr_readout=lr_readout,
            update=update,
            n_envs=n_envs,
            dtype=dtype,
            device=device,
            seed=seed,
            verbose=verbose,
        )
        self._traces: list[torch.Tensor] = []

    # ----------------------------------------------------------------------- modules
    def _build_extra_modules(self) -> None:
        self.synthesiser = make_synthesiser(
            self.core.state_size,
            hidden_size=self.synth_hidden,
            trace_parameters=self.synth_trace_parameters,
        )

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {**super()._modules(), "synthesiser": self.synthesiser}

    def _learning_rates(self) -> dict[str, float]:
        return {**super()._learning_rates(), "synthesiser": self.lr_synth}

    def _trainable_parameters(self, name: str) -> list[torch.nn.Parameter]:
        if name == "synthesiser":
            return list(self.synthesiser.trace_parameters())
        return super()._trainable_parameters(name)

    # --------------------------------------------------------------------- the rule
    def _begin_sequences(self, batch_size: int) -> None:
        shapes = self.synthesiser.trace_shapes(batch_size) if self.lr_synth > 0 else []
        if [tuple(e.shape) for e in self._traces] != [tuple(s) for s in shapes]:
            self._traces = [
                torch.zeros(shape, dtype=self.dtype, device=self.device) for shape in shapes
            ]
        else:
            for trace in self._traces:
                trace.zero_()
        self._state = self.core.initial_state(batch_size)
        self._previous = None  # (s_{t-1}, cache_{t-1}, g_{t-1}) once a token has been read
        if self.update == "sequence":
            self._zero_grads()

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self._state, self._cache = self.core.step(x, self._state)
        self._hidden = self.core.hidden(self._state)
        return self.readout(self._hidden)

    @torch.no_grad()
    def _learn_step(self, loss_grad, target, scored, final) -> None:
        if self.update == "step":
            self._zero_grads()
        s_t, cache_t = self._state, self._cache
        l_t = self._immediate_gradient(loss_grad)
        g_t = torch.zeros_like(s_t) if final else self.synthesiser(s_t)

        if self._previous is not None and self.lr_synth > 0:
            s_tm1, cache_tm1, g_tm1 = self._previous
            delta = traces.td_error(
                l_t, g_t, g_tm1, self.gamma, lambda u: self.core.vjp(cache_t, u)
            )
            for trace in self._traces:
                traces.decay_trace_(
                    trace, self.gamma * self.lam, lambda e: self.core.jvp(cache_tm1, e)
                )
            self.synthesiser.add_parameter_jacobians_(self._traces, s_tm1)
            self._apply_synth_increment(delta)
            self._watch(loss_grad, g_t, delta)
        else:
            self._watch(loss_grad, g_t)

        self._local_core_update(cache_t, l_t + self.sg_weight * g_t if self.sg_weight else l_t)
        self._previous = (s_t, cache_t, g_t)
        if self.update == "step":
            self._check_finite()
            self._optimizer_step()

    def _apply_synth_increment(self, delta: torch.Tensor) -> None:
        """grad -= mean_b delta . e per trace parameter (optionally rescaled to norm <= 1)."""
        batch_size = delta.shape[0]
        for parameter, trace in zip(self._trainable_parameters("synthesiser"), self._traces,
                                    strict=True):
            increment = (delta.reshape(1, -1) @ trace.reshape(delta.numel(), -1)).reshape(
                parameter.shape
            ) / batch_size
            if self.clip_synth_update:
                increment = increment / increment.norm().clamp(min=1.0)
            parameter.grad.sub_(increment)

    def _end_sequences(self) -> None:
        if self.update == "sequence":
            self._optimizer_step()

    # ------------------------------------------------------------------- checkpoints
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            **super()._hyperparameters(),
            "lam": self.lam,
            "gamma": self.gamma,
            "sg_weight": self.sg_weight,
            "lr_synth": self.lr_synth,
            "synth_hidden": self.synth_hidden,
            "synth_trace_parameters": self.synth_trace_parameters,
            "clip_synth_update": self.clip_synth_update,
        }
