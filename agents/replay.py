"""Replay: BP(λ)'s per-token synthesiser increments without eligibility traces.

Unrolling the accumulating trace e_u = γλ J_u e_{u−1} + ∂g(s_u)/∂θ (e_{−1} = 0, J_u = ∂s_u/∂s_{u−1})
gives each token's increment as a sum over the states of the sequence so far:

    δ_u · e_u = Σ_{τ=0}^{u} (γλ)^{u−τ} (δ_u J_u J_{u−1} ⋯ J_{τ+1}) · ∂g(s_τ)/∂θ
              = Σ_{j≥0} w_{u,j} · ∂g(s_{u−j})/∂θ,
    w_{u,0} = δ_u,    w_{u,j} = γλ · w_{u,j−1} J_{u−j+1}    (j steps back from state u),

with the TD error δ_u = (l_{u+1} + γ g_{u+1}) J_{u+1} − g_u (:func:`agents.traces.td_error`).
:class:`BackwardReplay` stores, per token t, the state s_t, the core's step cache of J_t, the
immediate gradient l_t and the synthetic gradient g_t. Once token u + 1 is stored, state u can be
replayed: δ_u, then the rows w_{u,j} by vector-Jacobian products (``core.vjp`` on the stored
caches), contracted with ∂g/∂θ in one ``synthesiser.parameter_vjp`` over the stacked (states,
rows) (one GEMM for a linear synthesiser): O(u·B·d²) work and O(u·B·d) memory for state u,
instead of the trace's O(B·d_out²·|θ|) work and memory. Same index convention as the trace path:
J_τ (the Jacobian *into* s_τ) carries a row from τ back to τ − 1, and δ_u uses J_{u+1}.

Several states at once. While the parameters stay fixed (BP(λ)'s ``update="sequence"``: the
optimiser steps after the sequence's last token), a state's increment can be computed any time
after token u + 1, so up to ``block`` states wait and are replayed together: one TD-error call for
all of them, then per step back j one ``core.vjp`` over the rows of every state that reaches it
(the caches of consecutive steps stacked along the batch) and one grouped ``parameter_vjp`` with
the states those rows reached. Each state's increment is the same as replayed alone (up to
rounding); only the number of calls changes, from about u per state to about two per step back
per block.

Exactness (equal to the trace path up to rounding). The trace path evaluates J_τ (for the decay of
e_{τ−1}) and ∂g(s_τ)/∂θ at the parameters of token τ + 1; replay evaluates them when it replays.
They coincide while the parameters stay fixed, and for ∂g/∂θ whenever g is linear in its trace
parameters (a linear synthesiser, or an MLP with traces over its output layer only). When the
parameters move after every token (``update="step"``, ``block=1``) this class keeps a copy of them
for each state, taken when the state is first replayed: the core's (``copy_core_parameters``: |Ψ|
numbers per token, loaded into a spare core before each replayed J_τ) and the synthesiser's trace
parameters (``copy_synthesiser_parameters``: |θ| per token, one ``parameter_vjp`` per stored
state instead of one in all). Replay is then exact in every mode.

Window: ``window=k`` replays only the last k states of each token (j < k), dropping the tail
(γλ)^k (δ_u J_u ⋯ J_{u−k+1}) · e_{u−k}: work per token bounded by k and memory by k + ``block``
tokens (for streams and long sequences), and exactly the trace path while u < k.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor

from agents import traces
from agents.cores import RecurrentCore
from agents.synthesisers import Synthesiser
from bpl_envs.checks import check_int, check_optional_int

__all__ = ["BackwardReplay"]


Module = TypeVar("Module", RecurrentCore, Synthesiser)


class _ParameterCopies(Generic[Module]):
    """The values of a module's parameters at each stored state, and a spare copy of the module
    to evaluate its derivatives at any of them."""

    def __init__(self, module: Module, parameters: Callable[[Module], Iterable[Tensor]]) -> None:
        self.module: Module = module
        self.parameters: Callable[[Module], Iterable[Tensor]] = parameters
        self.spare: Module = copy.deepcopy(module).requires_grad_(False)
        self.values: list[list[Tensor]] = []  # per state, from the replay's first stored one

    def take(self) -> None:
        """Keep the module's current parameter values (for the next state)."""
        self.values.append([p.detach().clone() for p in self.parameters(self.module)])

    def spare_at(self, index: int) -> Module:
        """The spare module with the values kept for stored state ``index`` loaded."""
        for parameter, value in zip(self.parameters(self.spare), self.values[index], strict=True):
            parameter.copy_(value)
        return self.spare


def _rows_of(cache: Any, start: int, stop: int) -> Any:
    """The batch rows start:stop of every tensor of a (concatenated) cache, as views; caches are
    tensors and (named) tuples of them, nested as a stacked core's per-layer caches are."""
    if isinstance(cache, Tensor):
        return cache[start:stop]
    fields = [_rows_of(field, start, stop) for field in cache]
    return type(cache)(*fields) if hasattr(cache, "_fields") else type(cache)(fields)


class BackwardReplay:
    """The tokens of a batch of sequences since it began (states, step caches, immediate and
    synthetic gradients), and the backward replay that turns them into the trace path's
    increments Σ_b δ_u · e_u (module docstring).

    Use: :meth:`push` every token; :meth:`flush` when ``pending >= block`` and after the last
    token; :meth:`clear` between batches.

    Args:
        core: the recurrent core; ``core.vjp(cache, w)`` is w J for the cache of a step.
        synthesiser: g; ``synthesiser.parameter_vjp(s, w)`` is Σ_rows w · ∂g(s)/∂θ.
        gamma: γ, the discount of the TD error.
        lam: λ; the rows decay by γλ per step back.
        window: replay the last ``window`` states of each token (an int >= 1), or None for every
            state since :meth:`clear`.
        block: how many states may be replayed together (1: each as soon as it can be; more only
            while the parameters stay fixed between :meth:`push` and :meth:`flush`).
        copy_core_parameters: evaluate each J_τ at the core's parameters when state τ was first
            replayed (for exactness when the core learns after every token; needs ``block=1``).
        copy_synthesiser_parameters: likewise for ∂g(s_τ)/∂θ (when the synthesiser learns after
            every token and is not linear in its trace parameters; needs ``block=1``).
    """

    def __init__(
        self,
        core: RecurrentCore,
        synthesiser: Synthesiser,
        gamma: float,
        lam: float,
        window: int | None = None,
        *,
        block: int = 1,
        copy_core_parameters: bool = False,
        copy_synthesiser_parameters: bool = False,
    ) -> None:
        self.core, self.synthesiser = core, synthesiser
        self.gamma, self.discount = float(gamma), float(gamma) * float(lam)
        window = check_optional_int("window", window, minimum=1)
        self.window = 1 if self.discount == 0.0 else window
        self.block = check_int("block", block, minimum=1)
        if (copy_core_parameters or copy_synthesiser_parameters) and block != 1:
            raise ValueError(
                f"parameter copies are for parameters that move after every token: they need "
                f"block=1, got block={block}"
            )
        # per stored token t = first, first + 1, ...: s_t, the cache of J_t, l_t, g_t
        self._tokens: list[tuple[Tensor, Any, Tensor, Tensor]] = []
        self._first = 0  # the token of self._tokens[0]
        self._next = 0  # the first state not replayed yet
        self._core_copies: _ParameterCopies[RecurrentCore] | None = None
        self._synthesiser_copies: _ParameterCopies[Synthesiser] | None = None
        if copy_core_parameters and self.window != 1:  # (window 1 replays no Jacobian)
            self._core_copies = _ParameterCopies(core, lambda module: module.parameters())
        if copy_synthesiser_parameters:
            self._synthesiser_copies = _ParameterCopies(
                synthesiser, lambda module: module.trace_parameters()
            )

    @property
    def pending(self) -> int:
        """States that can be replayed (their next token is stored) and have not been yet."""
        return max(0, self._first + len(self._tokens) - 1 - self._next)

    def clear(self) -> None:
        """Forget every stored token (a new batch of sequences starts)."""
        self._tokens.clear()
        for copies in (self._core_copies, self._synthesiser_copies):
            if copies is not None:
                copies.values.clear()
        self._first = self._next = 0

    def push(self, s_t: Tensor, cache_t: Any, l_t: Tensor, g_t: Tensor) -> None:
        """Store token t of the sequences (tokens are pushed in order, t = 0, 1, ...).

        Args:
            s_t: (B, d) the state after the token.
            cache_t: the core's step cache of the step into s_t (J_t).
            l_t: (B, d) the immediate gradient dL_t/ds_t.
            g_t: (B, d) the synthetic gradient g(s_t) (zero after the sequence's last token).
        """
        self._tokens.append((s_t, cache_t, l_t, g_t))

    def flush(self) -> tuple[int, tuple[Tensor, ...]]:
        """Replay the pending states u = first, ..., first + P - 1.

        Returns:
            (first, increments): the increments Σ_b δ_u · e_u, one tensor per
            ``synthesiser.trace_parameters()`` entry, (P, *θ.shape) with the states in order
            (freshly allocated: the caller may modify them).
        """
        pending = self.pending
        if pending == 0:
            raise RuntimeError("flush() needs a pending state: push() two tokens first")
        oldest, newest = self._next, self._next + pending - 1  # the states replayed now
        for copies in (self._core_copies, self._synthesiser_copies):
            if copies is not None:  # (block 1: the parameters of this token, for this state)
                copies.take()
        steps = newest + 1 if self.window is None else min(self.window, newest + 1)
        # the caches of J for tokens first_cache, ..., newest + 1, consecutive along the batch
        first_cache = max(1, oldest - steps + 2)
        stacked = self.core.concat_caches(
            [cache for _, cache, _, _ in self._stored(first_cache, newest + 2)]
        )
        deltas = self._td_errors(oldest, newest, stacked, first_cache)  # (P, B, d)
        increments = self._replay(oldest, newest, steps, deltas, stacked, first_cache)
        self._next = newest + 1
        if self.window is not None:  # state newest + 1 replays states newest + 2 - window, ...
            self._forget_before(newest + 2 - self.window)
        return oldest, increments

    def _stored(self, start: int, stop: int) -> list[tuple[Tensor, Any, Tensor, Tensor]]:
        return self._tokens[start - self._first : stop - self._first]

    def _td_errors(self, oldest: int, newest: int, stacked: Any, first_cache: int) -> Tensor:
        """δ_u = (l_{u+1} + γ g_{u+1}) J_{u+1} − g_u for u = oldest, ..., newest: (P, B, d),
        one :func:`agents.traces.td_error` over all of them."""
        _, _, l_next, g_next = zip(*self._stored(oldest + 1, newest + 2), strict=True)
        g_now = [g for _, _, _, g in self._stored(oldest, newest + 1)]
        batch, d = g_now[0].shape
        caches = _rows_of(
            stacked, (oldest + 1 - first_cache) * batch, (newest + 2 - first_cache) * batch
        )
        deltas = traces.td_error(
            torch.cat(l_next),
            torch.cat(g_next),
            torch.cat(g_now),
            self.gamma,
            lambda u: self.core.vjp(caches, u),
        )
        return deltas.view(newest - oldest + 1, -1, d)

    def _replay(
        self,
        oldest: int,
        newest: int,
        steps: int,
        deltas: Tensor,
        stacked: Any,
        first_cache: int,
    ) -> tuple[Tensor, ...]:
        """Σ_j w_{u,j} · ∂g(s_{u-j})/∂θ for the pending states u = oldest, ..., newest, as
        (P, *θ.shape) tensors: the rows of all of them one step back at a time
        (w_{u,0} = δ_u, w_{u,j} = γλ · w_{u,j-1} J_{u-j+1}, one ``core.vjp`` over the stacked
        caches), each step's rows contracted with the states they reached in one grouped
        ``parameter_vjp`` (a state u stops when u - j < 0 or j reaches the window)."""
        batch, d = deltas.shape[1:]
        states = torch.stack([s for s, _, _, _ in self._tokens])  # (n, B, d) from self._first
        rows, low = deltas, oldest  # rows: (m, B, d), w_{u,j} for the states u = low, ..., newest
        increments: list[Tensor] = []
        for j in range(steps):
            if j > 0:  # one step further back, for the states that reach it
                previous, low = rows[max(oldest, j) - low :], max(oldest, j)
                if low > newest:
                    break
                product = self._vjp_at(low - j + 1, newest - j + 2, previous, stacked, first_cache)
                rows = torch.mul(product, self.discount).view(-1, batch, d)
            reached = states[low - j - self._first : newest - j + 1 - self._first]
            part = self._synthesiser_at(low - j).parameter_vjp(reached, rows)
            if j == 0:
                increments = list(part)
            else:
                for increment, contribution in zip(increments, part, strict=True):
                    increment[low - oldest :].add_(contribution)
        return tuple(increments)

    def _vjp_at(
        self, start: int, stop: int, rows: Tensor, stacked: Any, first_cache: int
    ) -> Tensor:
        """rows (m, B, d) times J of the tokens start, ..., stop - 1 (one each), as (m·B, d);
        with core copies (one state at a time), J at the parameters copied for its token."""
        batch, d = rows.shape[1:]
        if self._core_copies is None:
            caches = _rows_of(stacked, (start - first_cache) * batch, (stop - first_cache) * batch)
            return self.core.vjp(caches, rows.reshape(-1, d))
        spare = self._core_copies.spare_at(start - self._first)
        return spare.vjp(self._stored(start, stop)[0][1], rows.reshape(-1, d))

    def _synthesiser_at(self, state: int) -> Synthesiser:
        """The synthesiser whose ∂g/∂θ the state ``state`` (the first reached) contracts with:
        the live one, or with copies (one state at a time) the spare at the copied values."""
        if self._synthesiser_copies is None:
            return self.synthesiser
        return self._synthesiser_copies.spare_at(state - self._first)

    def _forget_before(self, token: int) -> None:
        """Drop the stored tokens (and parameter copies) older than ``token``."""
        drop = token - self._first
        if drop > 0:
            del self._tokens[:drop]
            for copies in (self._core_copies, self._synthesiser_copies):
                if copies is not None:
                    del copies.values[:drop]
            self._first = token
