"""The conventions of the authors' code (``neuralml/bp_lambda``), as an option of BP(λ).

The paper's LSTM results were produced by code that differs from the exact rule in five ways
(docs/algorithm.md#differences-from-the-reference-implementation). ``BPLambda(...,
conventions=...)`` applies any of them by name; this module holds their formulas. Notation as in
docs/algorithm.md#the-lstm-core: gates i, f, u, o; A = ∂c′/∂h (H × H, through i, f and u);
D = o ⊙ tanh′(c′) = ∂h′/∂c′; l = [l_h, 0] the immediate gradient; β the ``sg_weight``.

================================  ==================================================  ========
item                              what the reference code does                        cores
================================  ==================================================  ========
``no_output_gate_path`` (1)       the transition J (TD error, trace, forward view)    LSTM
                                  has h-rows diag(D)·[A, diag(f)]: no path through o
``immediate_through_cell`` (2)    the TD target's immediate term is l̃ J with          LSTM
                                  l̃ = [l_h, l_h ⊙ D] (= 2 l J with item 1)
``gates_read_cell_signal`` (3)    gates i, f, u learn from l_h ⊙ D + β g_c, not from   LSTM
                                  the total l_h ⊙ D + β (g_c + g_h ⊙ D)
``doubled_bias_gradient`` (4)     the core's bias gradient is multiplied by 2          LSTM
``readout_per_target_step`` (5)   the readout's gradient is divided by the number of   all
                                  scored steps of the sequence
================================  ==================================================  ========

The reference code's BPTT, truncated BPTT and DNI backpropagate through the real cell by autograd
(items 1–3 do not occur there) but share items 4 (for the RNN too) and 5: :data:`BASELINE_ITEMS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from agents.cores import (
    AnalyticCore,
    DenseJacobianOperator,
    JacobianOperator,
    LSTMCore,
    LSTMStepCache,
    RecurrentCore,
    RNNCore,
)

__all__ = [
    "CONVENTIONS",
    "BASELINE_ITEMS",
    "BP_LAMBDA_ITEMS",
    "REPLAY_ITEMS",
    "LearnerConventions",
    "REFERENCE_ITEMS",
    "gates_read_cell_signal",
    "immediate_through_cell",
    "no_output_gate_jacobian",
    "no_output_gate_operator",
    "no_output_gate_vjp",
    "resolve_conventions",
]

REFERENCE_ITEMS = (
    "no_output_gate_path",
    "immediate_through_cell",
    "gates_read_cell_signal",
    "doubled_bias_gradient",
    "readout_per_target_step",
)
"""The five items, in the order of docs/algorithm.md."""

BP_LAMBDA_ITEMS: dict[type, tuple[str, ...]] = {
    LSTMCore: REFERENCE_ITEMS,
    RNNCore: ("readout_per_target_step",),
}
"""What ``conventions="reference"`` applies in BP(λ), by core class (the reference code's RNN
BP(λ) does not double its bias)."""

BASELINE_ITEMS: dict[type, tuple[str, ...]] = {
    LSTMCore: ("doubled_bias_gradient", "readout_per_target_step"),
    RNNCore: ("doubled_bias_gradient", "readout_per_target_step"),
}
"""What ``conventions="reference"`` applies in BPTT, truncated BPTT and DNI, by core class."""

ANY_CORE_ITEMS = ("readout_per_target_step",)
"""Items that apply to every core."""

REPLAY_ITEMS = ("doubled_bias_gradient", "readout_per_target_step")
"""Items BP(λ) applies with ``synth_update="replay"`` (gradient scalings before the optimiser
step; the replay's products are the exact rule's)."""

CONVENTIONS = ("exact", "reference")
"""The named sets: none of the items, or every item that applies to the core."""


def resolve_conventions(
    conventions: str | Sequence[str],
    core: RecurrentCore,
    update: str,
    applicable: dict[type, tuple[str, ...]] = BP_LAMBDA_ITEMS,
    learner: str = "BPLambda",
    *,
    replay: bool = False,
) -> tuple[str, ...]:
    """The items a ``conventions`` argument asks for, checked against the core and update mode.

    Args:
        conventions: ``"exact"`` (none), ``"reference"`` (every item of ``applicable`` for the
            core: for BP(λ) all five for the LSTM, ``readout_per_target_step`` for the RNN), or a
            list / tuple of item names from :data:`REFERENCE_ITEMS` (e.g. one item alone).
        core: the learner's core; ``"reference"`` is defined for the built-in one-layer
            ``RNNCore`` and ``LSTMCore`` only (the reference code has no other).
        update: the learner's update mode; ``readout_per_target_step`` needs ``"sequence"``
            (the number of scored steps is known only at the end of a sequence).
        applicable: the items each core class has in this learner (:data:`BP_LAMBDA_ITEMS`,
            :data:`BASELINE_ITEMS`); :data:`ANY_CORE_ITEMS` apply to every core.
        learner: the learner's name, for error messages.
        replay: BP(λ) with ``synth_update="replay"``, which takes only :data:`REPLAY_ITEMS`.

    Returns:
        The item names, in the order of :data:`REFERENCE_ITEMS`.
    """
    core_items = next((v for k, v in applicable.items() if isinstance(core, k)), None)
    items: tuple[str, ...]
    if isinstance(conventions, str):
        if conventions not in CONVENTIONS:
            raise ValueError(
                f"conventions must be one of {CONVENTIONS} or a list of items from "
                f"{REFERENCE_ITEMS}, got {conventions!r}"
            )
        if conventions == "exact":
            return ()
        if core_items is not None:
            items = core_items
        else:
            raise ValueError(
                "conventions='reference' describes the authors' RNN and LSTM code: it needs "
                f"core='rnn' or core='lstm' with num_layers=1, got a {type(core).__name__}; "
                "name the items that apply instead (readout_per_target_step applies to any core)"
            )
    elif isinstance(conventions, list | tuple):
        for item in conventions:
            if item not in REFERENCE_ITEMS:
                raise ValueError(
                    f"conventions items must be names from {REFERENCE_ITEMS}, got {item!r}"
                )
        if len(set(conventions)) != len(conventions):
            raise ValueError(f"conventions names an item twice: {list(conventions)}")
        items = tuple(item for item in REFERENCE_ITEMS if item in conventions)
        allowed = [i for i in REFERENCE_ITEMS if i in (core_items or ()) or i in ANY_CORE_ITEMS]
        if any(item not in allowed for item in items):
            raise ValueError(
                f"conventions items {[i for i in items if i not in allowed]} do not apply to "
                f"{learner} with a {type(core).__name__}; those that do: {allowed}"
            )
    else:
        raise TypeError(
            "conventions must be a str or a list / tuple of item names, got "
            f"{type(conventions).__name__}"
        )
    if replay and not set(items) <= set(REPLAY_ITEMS):
        raise ValueError(
            f"conventions {conventions!r} cannot be combined with synth_update='replay': the "
            f"replay applies the core's exact Jacobian and signals, so only {list(REPLAY_ITEMS)} "
            "apply there; use synth_update='trace' or 'forward_view'"
        )
    if "readout_per_target_step" in items and update != "sequence":
        raise ValueError(
            "conventions item 'readout_per_target_step' divides by the number of scored steps "
            f"of a sequence, known only at its end: it needs update='sequence', got {update!r}"
        )
    return items


# ------------------------------------------------------------------ item 1: the Jacobian
def _cell_to_hidden_block(core: LSTMCore, cache: LSTMStepCache) -> Tensor:
    """A = ∂c′/∂h = Σ_{k ∈ i, f, u} diag(gate slope_k) W_k: (B, H, H)."""
    H = core.hidden_size
    slopes = cache.gate_slopes.view(-1, 4, H, 1)[:, :3]
    return (slopes * core.weight_hh.view(4, H, H)[:3]).sum(dim=1)


def no_output_gate_jacobian(core: LSTMCore, cache: LSTMStepCache) -> Tensor:
    """J without the output-gate path: [[diag(D) A, diag(D ⊙ f)], [A, diag(f)]], (B, 2H, 2H).

    It is the Jacobian of s ↦ [o ⊙ tanh(c′(s)), c′(s)] with the output gate o held constant.
    """
    block = _cell_to_hidden_block(core, cache)
    c_rows = torch.cat((block, torch.diag_embed(cache.forget)), dim=2)  # (B, H, 2H)
    return torch.cat((cache.cell_to_hidden[:, :, None] * c_rows, c_rows), dim=1)


def no_output_gate_vjp(core: LSTMCore, cache: LSTMStepCache, u: Tensor) -> Tensor:
    """u J for row vectors u = [u_h, u_c] (B, 2H), J as :func:`no_output_gate_jacobian`:
    with a = u_c + u_h ⊙ D, u J = [a A, a ⊙ f], without building J."""
    H = core.hidden_size
    cell_adjoint = u[:, H:] + u[:, :H] * cache.cell_to_hidden
    gate_adjoint = cache.gate_slopes[:, : 3 * H] * cell_adjoint.repeat(1, 3)
    return torch.cat((gate_adjoint @ core.weight_hh[: 3 * H], cell_adjoint * cache.forget), dim=1)


def no_output_gate_operator(core: LSTMCore, cache: LSTMStepCache) -> JacobianOperator:
    """J of :func:`no_output_gate_jacobian` as the operator the trace decay applies (dense)."""
    jacobian = no_output_gate_jacobian(core, cache)
    return DenseJacobianOperator(
        lambda scale: jacobian if scale == 1.0 else jacobian * scale,
        jacobian.shape[0],
        jacobian.shape[1],
        jacobian,
    )


# ------------------------------------------------------------- items 2 and 3: the signals
def immediate_through_cell(core: LSTMCore, cache: LSTMStepCache, l_t: Tensor) -> Tensor:
    """l̃ = [l_h, l_h ⊙ D], the immediate term of the reference code's TD target: (B, 2H)."""
    l_h = l_t[:, : core.hidden_size]
    return torch.cat((l_h, l_h * cache.cell_to_hidden), dim=1)


def gates_read_cell_signal(
    core: LSTMCore, cache: LSTMStepCache, signal: Tensor, synthetic: Tensor
) -> Tensor:
    """The signal m′ = [m_h, m_c − s_h ⊙ D] whose exact one-step derivative is the reference
    code's core update (s = β g the synthetic part of m = l + β g, (B, 2H) each).

    ``core.local_vjp`` gives gates i, f, u the cell adjoint m′_c + m′_h ⊙ D = m_c + l_h ⊙ D and
    the output gate m′_h = m_h: the synthetic gradient's h-part no longer reaches i, f, u.
    """
    H = core.hidden_size
    cell = signal[:, H:] - synthetic[:, :H] * cache.cell_to_hidden
    return torch.cat((signal[:, :H], cell), dim=1)


# ------------------------------------------------------------------ what the learner calls
class LearnerConventions:
    """The pieces of BP(λ)'s rule that the items change; each is the exact rule where its item
    is off, so ``BPLambda`` calls these in place of the core's own products.

    Args:
        items: from :func:`resolve_conventions`.
        core: the learner's core (an ``LSTMCore`` whenever an LSTM item is on).
    """

    def __init__(self, items: tuple[str, ...], core: RecurrentCore) -> None:
        self.items, self.core = items, core
        # the items are on only for the cores that have them (resolve_conventions checks it)
        self._lstm, self._analytic = cast(LSTMCore, core), cast(AnalyticCore, core)

    def vjp(self, cache, u: Tensor) -> Tensor:
        """u J_t (B, d), J_t without the output-gate path under item 1."""
        if "no_output_gate_path" in self.items:
            return no_output_gate_vjp(self._lstm, cache, u)
        return self.core.vjp(cache, u)

    def jacobian_operator(self, cache) -> JacobianOperator:
        """J_t as the trace decay's operator, without the output-gate path under item 1."""
        if "no_output_gate_path" in self.items:
            return no_output_gate_operator(self._lstm, cache)
        return self.core.jacobian_operator(cache)

    def td_immediate(self, cache, l_t: Tensor) -> Tensor:
        """The immediate term of the TD target before J: l_t, or l̃_t under item 2 (B, d)."""
        if "immediate_through_cell" in self.items:
            return immediate_through_cell(self._lstm, cache, l_t)
        return l_t

    def core_signal(self, cache, l_t: Tensor, g_t: Tensor, sg_weight: float) -> Tensor:
        """The core's learning signal l_t + β g_t (B, d), as :func:`gates_read_cell_signal`
        under item 3."""
        if not sg_weight:
            return l_t
        signal = torch.add(l_t, g_t, alpha=sg_weight)
        if "gates_read_cell_signal" in self.items:
            return gates_read_cell_signal(self._lstm, cache, signal, sg_weight * g_t)
        return signal

    @torch.no_grad()
    def scale_gradients(self, readout: torch.nn.Module, scored_steps: int | None) -> None:
        """Before an optimiser step: the core's bias gradient times 2 (item 4) and the
        readout's gradients divided by ``scored_steps`` of the sequence (item 5; ``None``
        where no sequence has ended). Frozen modules (no gradient buffers) are left alone."""
        if "doubled_bias_gradient" in self.items and self._analytic.bias.grad is not None:
            self._analytic.bias.grad.mul_(2.0)
        if "readout_per_target_step" in self.items and scored_steps:
            for parameter in readout.parameters():
                if parameter.grad is not None:
                    parameter.grad.div_(scored_steps)
