"""Accumulate BP(lambda): a recurrent core learning online from synthetic gradients that a small
network g(s; theta) learns with TD errors and eligibility traces (Pemberton & Costa, TMLR 2024).

Per token t (docs/algorithm.md#the-rule-per-token; s_t the core's state, J_t = ds_t/ds_{t-1},
l_t = dL_t/ds_t of the batch-mean loss, g_t = g(s_t) with g := 0 on the last token of a
sequence):

    delta_{t-1} = (l_t + gamma g_t) J_t - g_{t-1}                    TD error of state t-1
    e_{t-1}     = gamma lambda J_{t-1} e_{t-2} + dg(s_{t-1})/dtheta    trace (the STORED J_{t-1})
    theta      += mean_b delta_{t-1} . e_{t-1}                       rescaled to norm <= 1
    grad_W     = (l_t + beta g_t) . (ds_t/dW)_local                  one-step derivatives only
    W_core     -= Adam step along grad_W                               descent: against the gradient

The TD error and the trace decay are the functions of :mod:`agents.traces` with the transition
operator J applied implicitly by the core (``core.vjp`` for u -> u J, ``core.jacobian_operator``
for e -> J e): TD(lambda) is the special case J = 1 with a scalar value.

Cost of the trace path (docs/algorithm.md#trace-path): traces of B·d_out·|theta| numbers,
decayed in place in cache-sized tiles with the TD-error contraction fused into the same pass, so
each token reads and writes every trace once and allocates nothing trace-sized. With
gamma·lambda = 0 the traces are just dg/dtheta and are never stored. ``synth_update="replay"``
computes the same per-token increments without traces, by a backward replay over the states
stored since the sequence began (:mod:`agents.replay`, O(t·B·d²) per token; ``replay_window``
bounds it). ``synth_update="forward_view"`` replaces the traces by the equivalent backward
recursion over the stored sequence (the summed update of a sequence, not online).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from agents import traces
from agents.cores import RecurrentCore
from agents.reference_conventions import LearnerConventions, resolve_conventions
from agents.replay import BackwardReplay
from agents.sequence_learner import LearnerEnv, SequenceLearner
from agents.synth_increments import SynthIncrements
from agents.synthesisers import TRACE_PARAMETER_MODES, make_synthesiser
from bpl_envs.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_non_negative,
    check_optional_int,
)

__all__ = ["SYNTH_UPDATES", "BPLambda"]

SYNTH_UPDATES = ("trace", "replay", "forward_view")
REPLAY_BLOCK = 32
"""With ``update="sequence"``, how many tokens the replay path learns from together (memory
grows with it: a block's replayed rows are REPLAY_BLOCK · min(t, replay_window) · B · d
numbers)."""


class BPLambda(SequenceLearner):
    """BP(lambda) learner with a Stable-Baselines3-shaped interface.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        core: ``"rnn"``, ``"lstm"`` (the LSTM's state, synthesised and traced, is [h, c]),
            ``"gru"``, or a core instance such as ``agents.cores.FunctionalCore(cell)``.
        hidden_size: H.
        activation: ``"tanh"`` or ``"identity"`` (RNN only).
        num_layers, recurrent_init, spectral_radius: stacked layers and the initialisation of
            W_hh, as :class:`~agents.sequence_learner.SequenceLearner`.
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
        clip_synth_update: rescale each step's synthesiser increment to norm <= 1 per tensor
            (the fraction of rescaled (token, tensor) increments of each batch is logged as
            ``train/synth_clip_fraction``).
        synth_update: how the synthesiser's update is computed.

            - ``"trace"`` (default): accumulate BP(lambda), eligibility traces updated every
              token: fully online, memory independent of the sequence length, O(B·d_out²·|theta|)
              work and memory per token.
            - ``"replay"``: the trace path's per-token increments delta_t . e_t computed without
              traces, by a backward replay over the states and step caches stored since the
              sequence began (:mod:`agents.replay`): for token t, t core VJPs and a synthesiser
              parameter-VJP, O(t·B·d²) work and O(t·B·d) memory. Equal to the trace path (tested
              to 1e-10 in float64) in every mode and on every core, per-token clipping included.
              With ``update="step"`` each token is replayed at once (fully online), and each
              stored state keeps a copy of the core's parameters (when ``lr_core > 0``) and of an
              MLP synthesiser's (when its hidden layer carries traces), so that every Jacobian
              and dg/dtheta is evaluated at the parameters the trace path used. With
              ``update="sequence"`` nothing is applied before the sequence ends, so the learner
              stores each token and learns from blocks of up to ``REPLAY_BLOCK`` tokens: one
              synthesiser call for the block's g(s_t), one core VJP per step back for all its
              replayed states, one local core update over its stacked caches; the same numbers
              in far fewer calls.
            - ``"forward_view"``: the summed update of each sequence, equal to the trace path's
              sum, but not online: memory grows with sequence length. The states, caches and
              gradients of a sequence are stored and sum_t (G^lambda_t - g(s_t)) . dg(s_t)/dtheta
              is computed after its last token by a backward recursion of lambda-returns,
              O(T·B·d²) plus one parameter contraction. Needs ``update="sequence"`` (theta fixed
              within a sequence) and ``clip_synth_update=False`` (per-token clipping has no
              forward view).
        replay_window: with ``synth_update="replay"``: None (default) replays the whole sequence
            so far (exact); an int k >= 1 replays only the last k tokens, dropping the
            (gamma lambda)^k J^k tail of the trace: memory and work per token bounded by k, for
            streams (``stream=True`` envs) and long sequences; exact while t < k.
        conventions: ``"exact"`` (default: the exact rule), ``"reference"`` (the authors' code:
            all five items of docs/algorithm.md#differences-from-the-reference-implementation
            for the LSTM, the readout's per-target-step scaling for the RNN), or a list of item
            names from :data:`agents.reference_conventions.REFERENCE_ITEMS`. With
            ``synth_update="replay"`` only the gradient scalings (items 4 and 5).
        n_envs, dtype, device, seed, verbose: as :class:`~agents.sequence_learner.SequenceLearner`.

    Attributes:
        core, readout, synthesiser: the torch modules (inspect or replace them freely).
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
        synth_update: str = "trace",
        replay_window: int | None = None,
        conventions: str | Sequence[str] = "exact",
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
        clip_synth_update = check_bool("clip_synth_update", clip_synth_update)
        synth_update = check_choice("synth_update", synth_update, SYNTH_UPDATES)
        replay_window = check_optional_int("replay_window", replay_window, minimum=1)
        if replay_window is not None and synth_update != "replay":
            raise ValueError(
                f"replay_window={replay_window!r} needs synth_update='replay' (it bounds the "
                f"replay), got synth_update={synth_update!r}; leave replay_window=None"
            )
        if synth_update == "forward_view" and update != "sequence":
            raise ValueError(
                f"synth_update='forward_view' needs update='sequence' (the forward view sums a "
                f"whole sequence with theta fixed), got update={update!r}; use "
                "synth_update='trace' to update after every token"
            )
        if synth_update == "forward_view" and clip_synth_update:
            raise ValueError(
                "synth_update='forward_view' cannot be combined with clip_synth_update=True: "
                "clipping rescales each token's increment delta_t . e_t, which the forward view "
                "never forms; pass clip_synth_update=False, or use synth_update='trace'"
            )
        self.synth_update, self.replay_window = synth_update, replay_window
        self.synth_hidden = check_optional_int("synth_hidden", synth_hidden, minimum=1)
        self.synth_trace_parameters = check_choice(
            "synth_trace_parameters", synth_trace_parameters, TRACE_PARAMETER_MODES
        )
        self.clip_synth_update = clip_synth_update
        super().__init__(
            env,
            core=core,
            hidden_size=hidden_size,
            activation=activation,
            num_layers=num_layers,
            recurrent_init=recurrent_init,
            spectral_radius=spectral_radius,
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
        self._trace_buffer: torch.Tensor | None = None  # holds the traces side by side
        self._replay: BackwardReplay | None = None
        items = resolve_conventions(
            conventions, self.core, self.update, replay=synth_update == "replay"
        )
        self.conventions = conventions if isinstance(conventions, str) else list(items)
        self._rule = LearnerConventions(items, self.core)

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

    def _trainable_parameters(self, name: str) -> list[torch.Tensor]:
        if name == "synthesiser":
            return list(self.synthesiser.trace_parameters())
        return super()._trainable_parameters(name)

    # --------------------------------------------------------------------- the rule
    def _begin_sequences(self, batch_size: int) -> None:
        traced = self.lr_synth > 0 and self.synth_update == "trace" and self.gamma * self.lam > 0
        shapes = self.synthesiser.trace_shapes(batch_size) if traced else []
        if [tuple(e.shape) for e in self._traces] != [tuple(s) for s in shapes]:
            self._allocate_traces(shapes)
        elif self._trace_buffer is not None:
            self._trace_buffer.zero_()
        self._traces_are_zero = True  # e_{-1} = 0: the first token skips the decay
        # (s_{t-1}, cache_{t-1}, g_{t-1}) once a token has been read
        self._previous: tuple[torch.Tensor, Any, torch.Tensor] | None = None
        self._sequence: list[tuple] = []  # forward view: (s_t, cache_t, l_t, g_t) per token
        self._block: list[tuple[torch.Tensor, Any, torch.Tensor]] = []  # replay, by block
        if self.synth_update == "replay" and self.lr_synth > 0:
            self._use_replay()
        else:
            self._replay = None
        self._increments = SynthIncrements(self.clip_synth_update, self.device)
        super()._begin_sequences(batch_size)

    def _use_replay(self) -> None:
        """An empty replay for this batch of sequences (built once per core and synthesiser).
        With ``update="sequence"`` the parameters stay fixed until the sequence ends, so blocks
        of up to REPLAY_BLOCK tokens are replayed together (:meth:`_learn_block`); with
        ``update="step"`` each token is replayed at once, and each stored state keeps a copy of
        the parameters its derivatives use."""
        replay = self._replay
        if (
            replay is not None
            and replay.core is self.core
            and replay.synthesiser is self.synthesiser
        ):
            replay.clear()
            return
        per_token = self.update == "step"
        self._replay = BackwardReplay(
            self.core,
            self.synthesiser,
            self.gamma,
            self.lam,
            self.replay_window,
            block=1 if per_token else REPLAY_BLOCK,
            copy_core_parameters=per_token and self.lr_core > 0,
            copy_synthesiser_parameters=per_token
            and not self.synthesiser.linear_in_trace_parameters,
        )

    def _allocate_traces(self, shapes: list[tuple[int, ...]]) -> None:
        """One (B, d_out, sum P) buffer holds every parameter's trace side by side, so each token
        decays and contracts all of them in one tiled pass; the contraction lands in a matching
        (sum P,) buffer whose views are the per-parameter increments."""
        self._traces, self._trace_buffer, self._scratch = [], None, None
        if not shapes:
            return
        self._trace_buffer, self._traces = traces.allocate_traces(
            shapes, dtype=self.dtype, device=self.device
        )
        self._scratch = traces.decay_scratch(self._trace_buffer)
        self._increment_buffer = torch.empty(
            self._trace_buffer.shape[2], dtype=self.dtype, device=self.device
        )
        widths = [math.prod(shape[2:]) for shape in shapes]
        self._increment_views = [
            block.view(shape[2:])
            for block, shape in zip(self._increment_buffer.split(widths), shapes, strict=True)
        ]

    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:
        if self.update == "step":
            self._zero_grads()
        s_t, cache_t = self._state, self._cache
        l_t = self._immediate_gradient(loss_grad)
        if self._replay is not None and self.update == "sequence":  # the rest per block
            self._block.append((s_t, cache_t, l_t))
            self._watch(loss_grad)
            if len(self._block) == REPLAY_BLOCK or final:
                self._learn_block(final)
            return
        g_t = torch.zeros_like(s_t) if final else self.synthesiser(s_t)
        r_t = self._rule.td_immediate(cache_t, l_t)  # the TD target's immediate term

        if self.lr_synth > 0 and self.synth_update == "forward_view":
            self._sequence.append((s_t, cache_t, r_t, g_t))
            self._watch(loss_grad, g_t)
        elif self._replay is not None:  # synth_update="replay", update="step": token by token
            self._replay.push(s_t, cache_t, l_t, g_t)
            self._watch(loss_grad, g_t)
            if self._replay.pending:
                self._apply_replayed_increments(*self._replay.flush())
        elif self._previous is not None and self.lr_synth > 0:
            s_tm1, cache_tm1, g_tm1 = self._previous
            delta = traces.td_error(
                r_t, g_t, g_tm1, self.gamma, lambda u: self._rule.vjp(cache_t, u)
            )
            self._apply_synth_increments(self._trace_increments(delta, s_tm1, cache_tm1))
            self._watch(g_t, delta)  # delta is non-finite if loss_grad is (l_t enters it via J)
        else:
            self._watch(loss_grad, g_t)

        self._local_core_update(cache_t, self._rule.core_signal(cache_t, l_t, g_t, self.sg_weight))
        self._previous = (s_t, cache_t, g_t)
        if self.update == "step":
            self._check_finite()
            self._rule.scale_gradients(self.readout, None)
            self._optimizer_step()

    def _learn_block(self, final: bool) -> None:
        """The replay path with ``update="sequence"``: what :meth:`_learn_step` does per token,
        for the block of tokens stored since the last block, in a few batched calls (nothing is
        applied before the sequence ends, so only the number of calls changes): the synthetic
        gradients g(s_t) (zero after the sequence's last token), the replayed increments of every
        state whose next token is stored, and the core's local update
        sum_t (l_t + beta g_t) . (ds_t/dW)_local over the stacked step caches."""
        replay = self._replay
        if replay is None:
            raise RuntimeError("_learn_block needs the replay that _begin_sequences makes")
        states, caches, immediate = zip(*self._block, strict=True)
        synthetic = self.synthesiser(torch.cat(states)).view(len(states), *states[0].shape)
        if final:
            synthetic[-1] = 0.0
        first_token = self._token_index - len(states) + 1
        self._watch_tokens(first_token, torch.linalg.vector_norm(synthetic, math.inf, dim=(1, 2)))
        for s_t, cache_t, l_t, g_t in zip(states, caches, immediate, synthetic, strict=True):
            replay.push(s_t, cache_t, l_t, g_t)
        if replay.pending:
            self._apply_replayed_increments(*replay.flush())
        if self.lr_core > 0:
            signals = torch.cat(immediate)
            if self.sg_weight:
                signals = torch.add(signals, synthetic.view_as(signals), alpha=self.sg_weight)
            self._local_core_update(self.core.concat_caches(caches), signals)
        self._block = []

    def _trace_increments(self, delta, s_tm1, cache_tm1) -> tuple[torch.Tensor, ...]:
        """sum_b delta_b . e_b per trace parameter, after advancing the traces to state t-1.

        e_{t-1} = gamma lambda J_{t-1} e_{t-2} + dg(s_{t-1})/dtheta, so the contraction splits
        into delta . dg/dtheta (the synthesiser's ``parameter_vjp``, O(B·d_out·d_in)) plus
        delta . (decayed trace), accumulated by ``decay_trace_`` tile by tile in the same pass
        that decays the trace. With gamma lambda = 0 there are no traces: e_{t-1} = dg/dtheta.
        """
        if self._trace_buffer is None:  # no traces
            return self.synthesiser.parameter_vjp(s_tm1, delta)
        # delta . dg/dtheta into the (sum P,) buffer, then delta . (decayed trace) added to it
        increments = self.synthesiser.parameter_vjp(s_tm1, delta, out=self._increment_views)
        if not self._traces_are_zero:  # (with e_{t-2} = 0 there is nothing to decay)
            jacobian_tm1 = self._rule.jacobian_operator(cache_tm1)  # the STORED J_{t-1}
            traces.decay_trace_(
                self._trace_buffer,
                self.gamma * self.lam,
                jacobian_tm1,
                scratch=self._scratch,
                delta_t=delta,
                increment=self._increment_buffer,
            )
        self.synthesiser.add_parameter_jacobians_(self._traces, s_tm1)
        self._traces_are_zero = False
        return increments

    def _apply_synth_increments(self, increments) -> None:
        """grad -= (sum_b delta_b . e_b) / B per trace parameter (rescaled to norm <= 1 when
        ``clip_synth_update``); the increments may be overwritten."""
        batch = self._state.shape[0]
        self._increments.add(self._trainable_parameters("synthesiser"), increments, batch)

    def _apply_replayed_increments(
        self, first_state: int, increments: tuple[torch.Tensor, ...]
    ) -> None:
        """As :meth:`_apply_synth_increments` for the increments of the states first_state, ...,
        first_state + P - 1 at once, each (P, *theta.shape), each state's clipped on its own.
        The trace path applies state u's increment at token u + 1, which the finite check
        names."""
        parameters = self._trainable_parameters("synthesiser")
        batch = self._state.shape[0]
        for norms in self._increments.add_per_state(parameters, increments, batch):
            self._watch_tokens(first_state + 1, norms)

    def _forward_view_increments(self) -> tuple[torch.Tensor, ...] | None:
        """sum_t sum_b (G^lambda_t - g_t) . dg(s_t)/dtheta over the stored sequence, with
        G^lambda_t = (l_{t+1} + gamma[(1 - lambda) g_{t+1} + lambda G^lambda_{t+1}]) J_{t+1}
        (g := 0 and G^lambda := 0 at the last token), the J products by ``core.vjp``."""
        if len(self._sequence) < 2:
            return None
        states, caches, immediate, predicted = zip(*self._sequence, strict=True)
        targets = traces.lambda_returns(
            torch.stack(immediate[1:]),
            self.gamma,
            torch.stack(predicted[1:]),
            self.lam,
            lambda t, u: self._rule.vjp(caches[t + 1], u),
        )  # targets[t] is G^lambda for the state of token t
        cotangents = targets - torch.stack(predicted[:-1])
        d = cotangents.shape[-1]
        return self.synthesiser.parameter_vjp(
            torch.stack(states[:-1]).view(-1, states[0].shape[1]), cotangents.view(-1, d)
        )

    def _end_sequences(self) -> None:
        if self._replay is not None and self._replay.pending:  # the states not yet replayed
            self._apply_replayed_increments(*self._replay.flush())
            self._check_finite()
        if self.update == "sequence" and self.lr_synth > 0 and self.synth_update == "forward_view":
            increments = self._forward_view_increments()
            self._sequence = []
            if increments is not None:
                self._watch(*increments)  # the update of the whole sequence, at its last token
                self._check_finite()
                self._apply_synth_increments(increments)
        if self.update == "sequence":
            self._rule.scale_gradients(self.readout, self._scored_tokens)
        super()._end_sequences()

    def _record_metrics(self, losses, scored_steps, correct, steps) -> None:
        super()._record_metrics(losses, scored_steps, correct, steps)
        fraction = self._increments.clip_fraction()  # of the batch's per-token increments
        if fraction is not None:
            self.logger.record("train/synth_clip_fraction", fraction)

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
            "synth_update": self.synth_update,
            "conventions": self.conventions,
            "replay_window": self.replay_window,
        }
