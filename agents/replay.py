"""Replay: BP(λ)'s per-token synthesiser increments without eligibility traces.

Unrolling the accumulating trace e_u = γλ J_u e_{u−1} + ∂g(s_u)/∂θ (e_{−1} = 0, J_u = ∂s_u/∂s_{u−1})
gives each token's increment as a sum over the states of the sequence so far:

    δ_u · e_u = Σ_{τ=0}^{u} (γλ)^{u−τ} (δ_u J_u J_{u−1} ⋯ J_{τ+1}) · ∂g(s_τ)/∂θ
              = Σ_τ w_τ · ∂g(s_τ)/∂θ,      w_u = δ_u,   w_τ = γλ · w_{τ+1} J_{τ+1}.

:class:`BackwardReplay` stores s_τ and the core's step cache of J_τ, and per token computes the
rows w_τ by u vector-Jacobian products (``core.vjp``, newest first) and contracts them with
∂g(s_τ)/∂θ in one ``synthesiser.parameter_vjp`` over the stacked (states, rows) (one GEMM for a
linear synthesiser): O(u·B·d²) work and O(u·B·d) memory per token, instead of the trace's
O(B·d_out²·|θ|) work and memory. Same index convention as the trace path: J_τ (the Jacobian *into*
s_τ) carries w from τ to τ − 1, the TD error δ_u uses J_{u+1}.

Exactness (equal to the trace path up to rounding). The trace path evaluates J_τ, for the decay of
e_{τ−1}, and ∂g(s_τ)/∂θ when it adds state τ, at the parameters of that moment; replay evaluates
them when it replays. They coincide while the parameters stay fixed (``update="sequence"``: the
optimiser steps after the sequence's last token; or frozen modules), and for ∂g/∂θ whenever g is
linear in its trace parameters (a linear synthesiser, or an MLP with traces over its output layer
only). Otherwise the parameters move after every token, and this class keeps a copy of them with
each stored state: the core's (``copy_core_parameters``: |Ψ| numbers per token, loaded into a
spare core before each replayed J_τ) and the synthesiser's trace parameters
(``copy_synthesiser_parameters``: |θ| per token, one ``parameter_vjp`` per stored state instead of
one in all). Replay is then exact in every mode.

Window: ``window=k`` keeps only the last k states, so the sum runs over τ > u − k and drops the
tail (γλ)^k (δ_u J_u ⋯ J_{u−k+1}) · e_{u−k}: bounded memory and work per token on streams and long
sequences, and exactly the trace path while u < k.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from itertools import islice

import torch
from torch import Tensor, nn

from agents.cores import RecurrentCore, StepCache
from agents.synthesisers import Synthesiser

__all__ = ["BackwardReplay", "check_replay_window"]


def check_replay_window(window: object) -> int | None:
    """Return ``window`` if it is None or an int >= 1, else raise naming ``replay_window``."""
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(
            f"replay_window must be None (the whole sequence so far) or an int >= 1 (the last k "
            f"tokens), got {window!r} of type {type(window).__name__}"
        )
    if window < 1:
        raise ValueError(
            f"replay_window must be None (the whole sequence so far) or an int >= 1 (the last k "
            f"tokens), got {window}"
        )
    return window


class _RecentRows:
    """The last ``window`` (B, d) tensors pushed (None: all since :meth:`clear`), kept contiguous
    and oldest first in one buffer, so that they are one (n, B, d) slice without restacking.

    With a window the buffer holds 2·window rows and the occupied slice slides forward; when it
    reaches the end, its newest window − 1 rows move to the front (one copy per window pushes).
    Without a window the buffer doubles when full.
    """

    def __init__(self, window: int | None) -> None:
        self.window = window
        self._buffer: Tensor | None = None
        self._start = self._stop = 0

    def clear(self) -> None:
        self._start = self._stop = 0

    def push(self, row: Tensor) -> None:
        buffer = self._buffer
        if (
            buffer is None
            or buffer.shape[1:] != row.shape
            or buffer.dtype != row.dtype
            or (buffer.device != row.device)
        ):
            capacity = 16 if self.window is None else 2 * self.window
            buffer = self._buffer = row.new_empty(capacity, *row.shape)
            self._start = self._stop = 0
        if self._stop == buffer.shape[0]:
            if self.window is None:  # grow
                grown = buffer.new_empty(2 * buffer.shape[0], *buffer.shape[1:])
                grown[: self._stop].copy_(buffer[: self._stop])
                buffer = self._buffer = grown
            else:  # slide: the newest window - 1 rows to the front (they do not overlap)
                keep = self.window - 1
                buffer[:keep].copy_(buffer[self._stop - keep : self._stop])
                self._start, self._stop = 0, keep
        buffer[self._stop].copy_(row)
        self._stop += 1
        if self.window is not None:
            self._start = max(self._start, self._stop - self.window)

    def view(self) -> Tensor:
        """The stored rows, oldest first: (n, B, d)."""
        return self._buffer[self._start : self._stop]


def _parameter_copy(parameters: Iterable[nn.Parameter]) -> list[Tensor]:
    return [parameter.detach().clone() for parameter in parameters]


def _load_(parameters: Iterable[nn.Parameter], values: list[Tensor]) -> None:
    for parameter, value in zip(parameters, values, strict=True):
        parameter.copy_(value)


class BackwardReplay:
    """The stored states and step caches of a batch of sequences, and the backward replay that
    turns each TD error into the trace path's increment Σ_b δ_u · e_u (see the module docstring).

    Args:
        core: the recurrent core; ``core.vjp(cache, w)`` is w J for the cache of a step.
        synthesiser: g; ``synthesiser.parameter_vjp(s, w)`` is Σ_rows w · ∂g(s)/∂θ.
        discount: γλ.
        window: keep the last ``window`` states (an int >= 1), or None for every state since
            :meth:`clear`.
        copy_core_parameters: evaluate each J_τ at the core's parameters when state τ was stored
            (needed for exactness when the core learns after every token).
        copy_synthesiser_parameters: likewise for ∂g(s_τ)/∂θ (needed when the synthesiser learns
            after every token and is not linear in its trace parameters).
    """

    def __init__(
        self,
        core: RecurrentCore,
        synthesiser: Synthesiser,
        discount: float,
        window: int | None = None,
        *,
        copy_core_parameters: bool = False,
        copy_synthesiser_parameters: bool = False,
    ) -> None:
        self.core, self.synthesiser, self.discount = core, synthesiser, float(discount)
        self.window = 1 if self.discount == 0.0 else check_replay_window(window)
        self._states = _RecentRows(self.window)
        self._rows: Tensor | None = None
        self._caches: deque[StepCache] = deque(maxlen=self.window)
        self._spare_core = self._spare_synthesiser = None
        self._core_copies: deque[list[Tensor]] | None = None
        self._synthesiser_copies: deque[list[Tensor]] | None = None
        if copy_core_parameters and self.window != 1:  # (window 1 replays no Jacobian)
            self._spare_core = copy.deepcopy(core).requires_grad_(False)
            self._core_copies = deque(maxlen=self.window)
        if copy_synthesiser_parameters:
            self._spare_synthesiser = copy.deepcopy(synthesiser).requires_grad_(False)
            self._synthesiser_copies = deque(maxlen=self.window)

    def clear(self) -> None:
        """Forget every stored state (a new batch of sequences starts)."""
        self._states.clear()
        self._caches.clear()
        for copies in (self._core_copies, self._synthesiser_copies):
            if copies is not None:
                copies.clear()

    def increment(self, delta_u: Tensor, s_u: Tensor, cache_u: StepCache) -> tuple[Tensor, ...]:
        """Store state u, then return Σ_b δ_u · e_u for each trace parameter of the synthesiser.

        Args:
            delta_u: (B, d) the TD error of state u.
            s_u: (B, d) the state u.
            cache_u: the core's step cache of the step into s_u (J_u).

        Returns:
            one tensor per ``synthesiser.trace_parameters()`` entry, shaped like it (freshly
            allocated: the caller may modify them).
        """
        self._store(s_u, cache_u)
        states = self._states.view()  # (n, B, d), oldest first
        rows = self._replay_rows(delta_u, states.shape[0])
        if self._synthesiser_copies is None:
            d = states.shape[-1]
            return self.synthesiser.parameter_vjp(states.reshape(-1, d), rows.reshape(-1, d))
        return self._contract_at_copies(states, rows)

    def _store(self, s_u: Tensor, cache_u: StepCache) -> None:
        self._states.push(s_u)
        self._caches.append(cache_u)
        if self._core_copies is not None:
            self._core_copies.append(_parameter_copy(self.core.parameters()))
        if self._synthesiser_copies is not None:
            self._synthesiser_copies.append(_parameter_copy(self.synthesiser.trace_parameters()))

    def _replay_rows(self, delta_u: Tensor, n: int) -> Tensor:
        """w_τ for the n stored states, oldest first: (n, B, d), w_u = δ_u and
        w_τ = γλ · w_{τ+1} J_{τ+1} (J of the stored state τ + 1, newest first)."""
        if self._rows is None or self._rows.shape[0] < n or self._rows.shape[1:] != delta_u.shape:
            self._rows = delta_u.new_empty(self.window or 2 * n, *delta_u.shape)
        rows = self._rows[:n]
        rows[n - 1].copy_(delta_u)
        caches = islice(reversed(self._caches), n - 1)  # J_u, J_{u-1}, ..., J_{u-n+2}
        copies = (
            islice(reversed(self._core_copies), n - 1)
            if self._core_copies is not None
            else [None] * (n - 1)
        )
        for k, cache, parameters in zip(range(n - 2, -1, -1), caches, copies, strict=True):
            torch.mul(self._vjp(cache, rows[k + 1], parameters), self.discount, out=rows[k])
        return rows

    def _vjp(self, cache: StepCache, w: Tensor, parameters: list[Tensor] | None) -> Tensor:
        """w J for the step of ``cache``, at the stored core ``parameters`` when given."""
        if parameters is None:
            return self.core.vjp(cache, w)
        _load_(self._spare_core.parameters(), parameters)
        return self._spare_core.vjp(cache, w)

    def _contract_at_copies(self, states: Tensor, rows: Tensor) -> tuple[Tensor, ...]:
        """Σ_τ w_τ · ∂g(s_τ)/∂θ with each ∂g(s_τ)/∂θ at the synthesiser copy stored with s_τ."""
        spare = self._spare_synthesiser
        totals: list[Tensor] | None = None
        for parameters, s_tau, w_tau in zip(self._synthesiser_copies, states, rows, strict=True):
            _load_(spare.trace_parameters(), parameters)
            part = spare.parameter_vjp(s_tau, w_tau)
            totals = (
                list(part)
                if totals is None
                else [a.add_(b) for a, b in zip(totals, part, strict=True)]
            )
        return tuple(totals)
