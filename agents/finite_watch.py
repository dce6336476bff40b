"""The recurrent learners' NaN/inf watch: a cheap witness per learning quantity, read in bulk."""

from __future__ import annotations

import math

import torch

__all__ = ["FiniteWatch"]


class FiniteWatch:
    """Which token's learning quantities first stopped being finite, without waiting on the
    device every token.

    :meth:`watch` keeps one max-|x| reduction per tensor (NaN if any entry is NaN, inf if any is
    infinite; unlike a sum it cannot overflow), on the tensors' device; :meth:`watch_tokens`
    keeps witnesses computed for several consecutive tokens at once (e.g. their norms).
    :meth:`first_non_finite` reads everything kept in one transfer and forgets it.
    """

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []  # 0-d, one per watched tensor
        self._tokens: list[int] = []
        self._spans: list[tuple[int, torch.Tensor]] = []  # (first token, (n,) witnesses)

    def __len__(self) -> int:
        """How many witnesses are kept (a learner checks them mid-batch past a limit)."""
        return len(self._values) + sum(witnesses.numel() for _, witnesses in self._spans)

    def watch(self, token: int, *tensors: torch.Tensor | None) -> None:
        """Keep a witness of each tensor (None entries are skipped) for ``token``."""
        for tensor in tensors:
            if tensor is not None:
                self._values.append(torch.linalg.vector_norm(tensor, math.inf))
                self._tokens.append(token)

    def watch_tokens(self, first: int, witnesses: torch.Tensor) -> None:
        """Keep ``witnesses`` (n,), finite where the quantities of the tokens first, ...,
        first + n - 1 were."""
        self._spans.append((first, witnesses.reshape(-1)))

    def first_non_finite(self) -> int | None:
        """The first token whose witnesses were NaN or infinite (None if all were finite), then
        forget every witness."""
        values = [torch.stack(self._values)] if self._values else []
        values += [witnesses for _, witnesses in self._spans]
        first = None
        if values:
            finite = torch.isfinite(torch.cat(values))
            if not bool(finite.all()):
                tokens = self._tokens + [
                    start + k for start, witnesses in self._spans for k in range(len(witnesses))
                ]
                first = min(tokens[i] for i in finite.logical_not().nonzero()[:, 0].tolist())
        self._values.clear()
        self._tokens.clear()
        self._spans.clear()
        return first
