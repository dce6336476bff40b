"""Any torch cell as a core: derivatives by ``torch.func`` instead of by hand.

:class:`FunctionalCore` wraps a ``torch.nn.Module`` computing ``cell(x, s) -> s'`` on a batch
(x (B, n_in), s (B, d) → (B, d)), e.g. ``torch.nn.RNNCell``, ``torch.nn.GRUCell`` or a cell of
your own, and gives every learner the derivative products it needs:

===================  ===========================================================================
``vjp``              ``torch.func.vjp`` of the batched cell with respect to s
``local_vjp``        ``torch.func.vjp`` with respect to the parameters (``functional_call``)
``jacobian``         ``torch.func.jacrev`` of one sample under ``vmap`` over the batch, (B, d, d)
``jvp``, operator    that dense J, applied by one batched GEMM per block
``local_jacobian``   ``jacrev`` with respect to the parameters under ``vmap``, (B, d, *θ.shape)
===================  ===========================================================================

The cell must treat the samples of a batch independently (no batch norm across sequences), and
it is called on one sample at a time as a batch of one (under ``vmap``) for the Jacobians.
A cell with a tuple state, such as ``torch.nn.LSTMCell`` (``(h, c)``), needs a small wrapper that
concatenates it into one tensor. Derivatives are taken at the parameters' current values.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vjp, vmap

from agents.cores.base import DenseJacobianOperator, JacobianOperator, RecurrentCore
from bpl_envs.checks import check_int

__all__ = ["FunctionalCore", "FunctionalStepCache"]


class FunctionalStepCache(NamedTuple):
    """What :class:`FunctionalCore` needs to differentiate one step: its inputs (the cell is
    re-run under ``torch.func`` transforms).

    Attributes:
        x: (B, n_in) the input of the step.
        s: (B, d) the previous state.
    """

    x: Tensor
    s: Tensor


def _size(name: str, given: int | None, cell: nn.Module, attribute: str) -> int:
    """``given``, or the cell's ``attribute`` (as torch's cells have) when None."""
    if given is None:
        given = getattr(cell, attribute, None)
        if given is None:
            raise ValueError(
                f"{name} is needed: {type(cell).__name__} has no int attribute {attribute!r} to "
                f"read it from; pass FunctionalCore(cell, {name}=...)"
            )
    return check_int(name, given, minimum=1)


class FunctionalCore(RecurrentCore):
    """A core wrapping any ``torch.nn.Module`` ``cell(x, s) -> s'``; its parameters are the
    cell's, in the cell's ``parameters()`` order.

    Args:
        cell: the transition, batched: x (B, n_in), s (B, d) → s' (B, d).
        input_size: n_in; default ``cell.input_size`` (torch's cells have it).
        state_size: d; default ``cell.hidden_size`` (torch's cells have it).
        hidden_size: H <= d, the number of leading state columns the readout reads; default d.

    Raises:
        TypeError: ``cell`` is not a Module, or returns something other than one tensor.
        ValueError: a size is missing or invalid, the cell has no parameters, or its output
            does not have the state's shape (checked by calling it on zeros).
    """

    cache_type = FunctionalStepCache

    def __init__(
        self,
        cell: nn.Module,
        *,
        input_size: int | None = None,
        state_size: int | None = None,
        hidden_size: int | None = None,
    ) -> None:
        if not isinstance(cell, nn.Module):
            raise TypeError(
                f"cell must be a torch.nn.Module computing cell(x, s) -> s', got "
                f"{type(cell).__name__}"
            )
        input_size = _size("input_size", input_size, cell, "input_size")
        state_size = _size("state_size", state_size, cell, "hidden_size")
        hidden_size = state_size if hidden_size is None else hidden_size
        super().__init__(input_size, hidden_size)
        if self.hidden_size > state_size:
            raise ValueError(
                f"hidden_size must be at most state_size = {state_size}, got {hidden_size}"
            )
        self._state_size = state_size
        self.cell = cell
        parameters = list(cell.parameters())
        if not parameters or not all(p.is_floating_point() for p in parameters):
            raise ValueError(
                f"cell must have floating-point parameters to learn, got {type(cell).__name__} "
                f"with {len(parameters)} parameter(s)"
            )
        self._check_cell()

    @property
    def state_size(self) -> int:
        return self._state_size

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, state_size={self.state_size}, "
            f"hidden_size={self.hidden_size}"
        )

    def _check_cell(self) -> None:
        """Call the cell on zeros, x (2, n_in) and s (2, d): it must return one (2, d) tensor."""
        like = self._like()
        x = torch.zeros(2, self.input_size, dtype=like.dtype, device=like.device)
        s = torch.zeros(2, self.state_size, dtype=like.dtype, device=like.device)
        try:
            with torch.no_grad():
                s_next = self.cell(x, s)
        except Exception as error:
            raise ValueError(
                f"cell(x, s) failed on x of shape (2, {self.input_size}) and s of shape "
                f"(2, {self.state_size}): {type(error).__name__}: {error} (the state must be "
                "one tensor: a cell with a tuple state, such as torch.nn.LSTMCell, needs a "
                "wrapper that concatenates it)"
            ) from error
        self._check_output(s_next, s)

    def _check_output(self, s_next: object, s: Tensor) -> None:
        if not isinstance(s_next, Tensor):
            raise TypeError(
                f"cell(x, s) must return the new state as one tensor shaped like s, got "
                f"{type(s_next).__name__} (a cell with a tuple state, such as "
                "torch.nn.LSTMCell, needs a wrapper that concatenates it)"
            )
        if s_next.shape != s.shape:
            raise ValueError(
                f"cell(x, s) must return the new state shaped like s {tuple(s.shape)} "
                f"(state_size = {self.state_size}), got {tuple(s_next.shape)}"
            )

    # ----------------------------------------------------------------- transition
    def _forward(self, x: Tensor, s: Tensor) -> Tensor:
        s_next = self.cell(x, s)
        self._check_output(s_next, s)
        return s_next

    def _step(self, x: Tensor, s: Tensor) -> tuple[Tensor, FunctionalStepCache]:
        return self._forward(x, s), FunctionalStepCache(x.detach(), s.detach())

    # ----------------------------------------------------------------- torch.func
    def _detached_parameters(self) -> dict[str, Tensor]:
        return {name: p.detach() for name, p in self.cell.named_parameters()}

    def _call(self, parameters: dict[str, Tensor], x: Tensor, s: Tensor) -> Tensor:
        return functional_call(self.cell, parameters, (x, s))

    def _one(self, parameters: dict[str, Tensor], x: Tensor, s: Tensor) -> Tensor:
        """s' of one sample, x (n_in,), s (d,) → (d,), through the cell as a batch of one."""
        return self._call(parameters, x[None], s[None])[0]

    def _jacobian(self, cache: FunctionalStepCache) -> Tensor:
        per_sample = vmap(jacrev(self._one, argnums=2), in_dims=(None, 0, 0))
        return per_sample(self._detached_parameters(), cache.x, cache.s)

    def _vjp(self, cache: FunctionalStepCache, v: Tensor) -> Tensor:
        parameters = self._detached_parameters()
        pullback = vjp(lambda s: self._call(parameters, cache.x, s), cache.s)[1]
        return pullback(v)[0]

    def _jacobian_operator(self, cache: FunctionalStepCache) -> JacobianOperator:
        jacobian = self._jacobian(cache)
        return DenseJacobianOperator(
            lambda scale: jacobian if scale == 1.0 else jacobian * scale,
            cache.s.shape[0],
            cache.s.shape[1],
            self._like(),
        )

    def _local_vjp(self, cache: FunctionalStepCache, m: Tensor) -> tuple[Tensor, ...]:
        parameters = self._detached_parameters()
        pullback = vjp(lambda p: self._call(p, cache.x, cache.s), parameters)[1]
        grads = pullback(m)[0]
        return tuple(grads[name] for name in parameters)

    def _local_jacobian(self, cache: FunctionalStepCache) -> tuple[Tensor, ...]:
        parameters = self._detached_parameters()
        per_sample = vmap(jacrev(self._one, argnums=0), in_dims=(None, 0, 0))
        jacobians = per_sample(parameters, cache.x, cache.s)
        return tuple(jacobians[name] for name in parameters)
