"""Backpropagation through time, whole or truncated, and DNI (truncated BPTT + synthetic gradients).

The three learners are one rule with two knobs. Every token's cache and immediate gradient
l_t = dL_t/ds_t (of the batch-mean loss) are recorded; at the end of a chunk of tokens k+1..k+n
(n tokens, or fewer at the end of a sequence) one backward sweep runs through the chunk with the
core's analytic vector-Jacobian products (J_t = ds_t/ds_{t-1}, no autograd graph):

    m_{k+n} = l_{k+n} + v,     m_t = l_t + m_{t+1} J_{t+1}        (t = k+n-1, ..., k+1)
    grad W += sum_t m_t . (ds_t/dW)_local

which is the exact gradient of the chunk's losses (plus v . s_{k+n}) with the state s_k the chunk
starts from held fixed: the gradient stops at chunk boundaries and the state is carried over.

=================  ============================  =================================================
learner            chunk                         v (gradient arriving at the chunk's last state)
=================  ============================  =================================================
``BPTT``           the whole sequence            0
``TruncatedBPTT``  n tokens                      0
``DNI``            n tokens                      sg_weight * g(s_{k+n}) (0 after the last token)
=================  ============================  =================================================

DNI's synthesiser g (Jaderberg et al. 2017) is regressed on the n-step bootstrapped gradient that
arrives at the chunk's first state (docs/algorithm.md#baselines; BP(0) is DNI with n = 1):

    target_k = sum_{t=k+1}^{k+n} gamma^{t-k-1} dL_t/ds_k + gamma^n g(s_{k+n}) ds_{k+n}/ds_k,

computed by a second sweep, q_{k+n} = l_{k+n} + gamma g(s_{k+n}), q_t = l_t + gamma q_{t+1} J_{t+1},
target_k = q_{k+1} J_{k+1}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from agents.cores import RecurrentCore
from agents.reference_conventions import (
    BASELINE_ITEMS,
    LearnerConventions,
    resolve_conventions,
)
from agents.sequence_learner import LearnerEnv, SequenceLearner, grad_of
from agents.synthesisers import make_synthesiser
from bpl_envs.checks import check_fraction, check_int, check_non_negative

__all__ = ["BPTT", "DNI", "TruncatedBPTT", "check_truncation"]


def check_truncation(n: object) -> int:
    """Return the truncation length ``n`` as an int if it is an integer >= 1, else raise."""
    return check_int("n (the truncation length, in tokens)", n, minimum=1)


class _ChunkedBackprop(SequenceLearner):
    """The shared rule: backward sweeps through chunks of ``_chunk_length`` tokens (None: whole
    sequences). Subclasses set the chunk length and may override :meth:`_end_chunk`."""

    _chunk_length: int | None = None

    def __init__(
        self, env: LearnerEnv, *, conventions: str | Sequence[str] = "exact", **settings: Any
    ) -> None:
        super().__init__(env, **settings)
        items = resolve_conventions(
            conventions, self.core, self.update, BASELINE_ITEMS, type(self).__name__
        )
        self.conventions = conventions if isinstance(conventions, str) else list(items)
        self._rule = LearnerConventions(items, self.core)

    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)
        self._chunk: list[tuple[Any, torch.Tensor]] = []  # (cache_t, l_t) per token

    def _learn_step(self, loss_grad: torch.Tensor | None, final: bool) -> None:
        if self.update == "step" and not self._chunk:
            self._zero_grads()
        self._chunk.append((self._cache, self._immediate_gradient(loss_grad)))
        self._watch(loss_grad)
        if final or len(self._chunk) == self._chunk_length:
            self._end_chunk(final)
            self._chunk = []
            if self.update == "step":
                self._check_finite()
                self._rule.scale_gradients(self.readout, None)
                self._optimizer_step()

    def _end_sequences(self) -> None:
        if self.update == "sequence":
            self._rule.scale_gradients(self.readout, self._scored_tokens)
        super()._end_sequences()

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "conventions": self.conventions}

    def _end_chunk(self, final: bool) -> None:  # noqa: ARG002 (DNI uses final)
        """Accumulate the chunk's gradient (plain truncated BPTT: nothing arrives from after it)."""
        if self.lr_core > 0:
            self._accumulate_core_gradient(self._sweep(None, 1.0))

    def _sweep(self, tail: torch.Tensor | None, discount: float) -> list[torch.Tensor]:
        """Backward through the chunk: m_last = l_last + tail, m_t = l_t + discount m_{t+1} J_{t+1}.

        Args:
            tail: (B, d) added to the last token's gradient, or None.
            discount: factor per step back.

        Returns:
            [m_t for the chunk's tokens, first to last], each (B, d).
        """
        l_last = self._chunk[-1][1]
        m = l_last if tail is None else l_last + tail
        signals = [m]
        for (_, l_t), (cache_next, _) in zip(
            reversed(self._chunk[:-1]), reversed(self._chunk[1:]), strict=True
        ):
            m = l_t.add(self.core.vjp(cache_next, m), alpha=discount)
            signals.append(m)
        signals.reverse()
        return signals

    def _accumulate_core_gradient(self, signals: list[torch.Tensor]) -> None:
        """grad W += sum_t m_t . (ds_t/dW)_local over the chunk, in one ``local_vjp``."""
        self._watch(signals[0])
        caches = [cache for cache, _ in self._chunk]
        self._local_core_update(self.core.concat_caches(caches), torch.cat(signals))


class BPTT(_ChunkedBackprop):
    """Full backpropagation through time: the exact gradient of each sequence's whole loss.

    One update per batch of sequences, applied after its last token (the gold standard the
    online learners are compared against). Memory O(T·B·H): every token's cache is kept until
    the sequence ends.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        conventions: ``"exact"`` (default), ``"reference"`` (what the reference code's baselines
            share with its BP(λ): the bias gradient doubled, the readout's gradient divided by
            the number of scored steps) or a list of those item names; see
            docs/algorithm.md#differences-from-the-reference-implementation.
        core, hidden_size, activation, num_layers, recurrent_init, spectral_radius, lr_core,
        lr_readout, n_envs, dtype, device, seed, verbose: as
            :class:`~agents.sequence_learner.SequenceLearner`.
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
        conventions: str | Sequence[str] = "exact",
        n_envs: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
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
            update="sequence",
            conventions=conventions,
            n_envs=n_envs,
            dtype=dtype,
            device=device,
            seed=seed,
            verbose=verbose,
        )

    def _hyperparameters(self) -> dict[str, Any]:
        hyperparameters = super()._hyperparameters()
        del hyperparameters["update"]  # always "sequence": not a constructor argument
        return hyperparameters


class TruncatedBPTT(_ChunkedBackprop):
    """Truncated BPTT: backpropagation within chunks of n tokens, none across their boundaries.

    The sequence is cut into chunks of n tokens (the last may be shorter); each chunk's losses
    are backpropagated to the chunk's first token, and the state is carried over (detached).
    n = 1 learns from the immediate loss with one-step derivatives only (as :class:`NoSG`);
    n >= T is :class:`BPTT`.

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        n: the truncation length in tokens, an int >= 1.
        update: ``"sequence"`` accumulates the chunks' gradients over the batch of sequences and
            applies them once after its last token; ``"step"`` applies each chunk's gradient at
            the end of the chunk (every n tokens: online with a delay of at most n - 1 tokens).
        conventions: ``"exact"`` (default), ``"reference"`` (what the reference code's baselines
            share with its BP(λ): the bias gradient doubled, the readout's gradient divided by
            the number of scored steps) or a list of those item names; see
            docs/algorithm.md#differences-from-the-reference-implementation.
        core, hidden_size, activation, num_layers, recurrent_init, spectral_radius, lr_core,
        lr_readout, n_envs, dtype, device, seed, verbose: as
            :class:`~agents.sequence_learner.SequenceLearner`.
    """

    def __init__(
        self,
        env: LearnerEnv,
        *,
        n: int = 5,
        core: str | RecurrentCore = "rnn",
        hidden_size: int = 30,
        activation: str = "tanh",
        num_layers: int = 1,
        recurrent_init: str = "uniform",
        spectral_radius: float | None = None,
        lr_core: float = 1e-3,
        lr_readout: float = 1e-3,
        update: str = "sequence",
        conventions: str | Sequence[str] = "exact",
        n_envs: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.n = self._chunk_length = check_truncation(n)
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
            conventions=conventions,
            n_envs=n_envs,
            dtype=dtype,
            device=device,
            seed=seed,
            verbose=verbose,
        )

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "n": self.n}


class DNI(TruncatedBPTT):
    """Decoupled neural interfaces (Jaderberg et al. 2017): truncated BPTT whose chunks receive
    a synthetic gradient for the future beyond the truncation.

    At the end of each chunk the synthesiser's prediction g(s) of the future gradient at the
    chunk's last state, scaled by ``sg_weight``, is backpropagated with the chunk's losses (g := 0
    after the last token of a sequence). The synthesiser is regressed on the n-step bootstrapped
    target that arrives at the chunk's first state s_k (the previous boundary; the zero initial
    state is not regressed), minimising 1/2 mean_b |g(s_k) - target_k|^2 with g(s_k) the
    prediction made at that boundary (see the module docstring). With n = 1 this is BP(0).

    Args:
        env: a ``bpl/...`` env id, a single env, a vector env (its sub-envs are the batch), or a
            :class:`~bpl_envs.TaskSpec` for a learner that only predicts.
        n: the truncation length in tokens, an int >= 1.
        gamma: discount in [0, 1] of future losses in the synthesiser's target.
        sg_weight: beta >= 0, the weight of the synthetic gradient in the core's learning signal.
        lr_synth: Adam learning rate of the synthesiser (0 freezes it).
        synth_hidden: None for a linear synthesiser, else the width of a one-hidden-layer MLP
            (its output layer starts at zero, so g = 0 at the start either way).
        update: ``"sequence"`` (accumulate over the batch, apply after its last token) or
            ``"step"`` (apply at the end of every chunk).
        conventions: ``"exact"`` (default), ``"reference"`` (what the reference code's baselines
            share with its BP(λ): the bias gradient doubled, the readout's gradient divided by
            the number of scored steps) or a list of those item names; see
            docs/algorithm.md#differences-from-the-reference-implementation.
        core, hidden_size, activation, num_layers, recurrent_init, spectral_radius, lr_core,
        lr_readout, n_envs, dtype, device, seed, verbose: as
            :class:`~agents.sequence_learner.SequenceLearner`.

    Attributes:
        core, readout, synthesiser: the torch modules.
    """

    def __init__(
        self,
        env: LearnerEnv,
        *,
        n: int = 5,
        core: str | RecurrentCore = "rnn",
        hidden_size: int = 30,
        activation: str = "tanh",
        num_layers: int = 1,
        recurrent_init: str = "uniform",
        spectral_radius: float | None = None,
        gamma: float = 1.0,
        sg_weight: float = 1.0,
        lr_core: float = 1e-3,
        lr_readout: float = 1e-3,
        lr_synth: float = 1e-4,
        synth_hidden: int | None = None,
        update: str = "sequence",
        conventions: str | Sequence[str] = "exact",
        n_envs: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.gamma = check_fraction("gamma", gamma)
        self.sg_weight = check_non_negative("sg_weight", sg_weight)
        self.lr_synth = check_non_negative("lr_synth", lr_synth)
        self.synth_hidden = (
            None if synth_hidden is None else check_int("synth_hidden", synth_hidden, minimum=1)
        )
        super().__init__(
            env,
            n=n,
            core=core,
            hidden_size=hidden_size,
            activation=activation,
            num_layers=num_layers,
            recurrent_init=recurrent_init,
            spectral_radius=spectral_radius,
            lr_core=lr_core,
            lr_readout=lr_readout,
            update=update,
            conventions=conventions,
            n_envs=n_envs,
            dtype=dtype,
            device=device,
            seed=seed,
            verbose=verbose,
        )

    # ----------------------------------------------------------------------- modules
    def _build_extra_modules(self) -> None:
        self.synthesiser = make_synthesiser(self.core.state_size, hidden_size=self.synth_hidden)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {**super()._modules(), "synthesiser": self.synthesiser}

    def _learning_rates(self) -> dict[str, float]:
        return {**super()._learning_rates(), "synthesiser": self.lr_synth}

    # --------------------------------------------------------------------- the rule
    def _begin_sequences(self, batch_size: int) -> None:
        super()._begin_sequences(batch_size)
        self._boundary: tuple[torch.Tensor, torch.Tensor] | None = None  # (s_k, g(s_k))

    def _end_chunk(self, final: bool) -> None:
        s_end = self._state
        g_end = torch.zeros_like(s_end) if final else self.synthesiser(s_end)
        if self.lr_core > 0:
            tail = self.sg_weight * g_end if self.sg_weight else None
            self._accumulate_core_gradient(self._sweep(tail, 1.0))
        if self._boundary is not None and self.lr_synth > 0:
            s_k, g_k = self._boundary
            first_cache = self._chunk[0][0]
            q = self._sweep(self.gamma * g_end, self.gamma)[0]
            target = self.core.vjp(first_cache, q)
            self._watch(g_end, target)
            self._regress_synthesiser(s_k, g_k, target)
        self._boundary = None if final else (s_end, g_end)

    def _regress_synthesiser(
        self, s_k: torch.Tensor, g_k: torch.Tensor, target: torch.Tensor
    ) -> None:
        """grad θ += (g_k - target) . dg(s_k)/dθ / B: the gradient of 1/2 mean_b |g - target|^2.

        Args:
            s_k: (B, d) the boundary state.
            g_k: (B, d) the synthesiser's prediction made at that boundary.
            target: (B, d) the bootstrapped target.
        """
        parameters = self._trainable_parameters("synthesiser")
        with torch.enable_grad():
            prediction = self.synthesiser(s_k)
            grads = torch.autograd.grad(prediction, parameters, (g_k - target) / s_k.shape[0])
        for parameter, grad in zip(parameters, grads, strict=True):
            grad_of(parameter).add_(grad)

    # ------------------------------------------------------------------- checkpoints
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            **super()._hyperparameters(),
            "gamma": self.gamma,
            "sg_weight": self.sg_weight,
            "lr_synth": self.lr_synth,
            "synth_hidden": self.synth_hidden,
        }
