"""Stacked cores: L built-in layers, each reading the new hidden units of the layer below.

With layer l's state s^l (d_l wide) and hidden units h^l = hidden(s^l), one step is

    s'^1 = F_1(x, s^1),      s'^l = F_l(h'^{l−1}, s^l)   (l = 2..L),

as ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with ``num_layers=L`` compute it. The state is the
concatenation s = [s^1, ..., s^L] (d = Σ d_l) and the readout reads the top layer's hidden units.
The Jacobian is block-lower-triangular: with A_l = ∂F_l/∂s^l and C_l = ∂F_l/∂h'^{l−1},

    J_{l,l} = A_l,      J_{l,k} = C_l · J_{l−1,k}[hidden rows]   (k < l),

so v J runs down the stack (each layer's vjp, plus its input vjp handed to the layer below) and
J e runs up it (each layer's operator, plus C_l applied to the layer below's result). A layer's
parameters also reach the layers above it within the step, so the local parameter derivatives
run the same downward sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from agents.cores.analytic import AnalyticCore
from agents.cores.base import JacobianOperator, RecurrentCore

__all__ = ["StackedCore", "StackedStepCache"]


class StackedStepCache(NamedTuple):
    """The caches of one step of a :class:`StackedCore`.

    Attributes:
        layers: each layer's step cache, bottom layer first.
    """

    layers: tuple


class _StackedJacobianOperator(JacobianOperator):
    """scale · J e layer by layer: block l of the result is scale · A_l e^l (layer l's operator)
    plus C_l times the hidden rows of block l − 1 of the result (already scaled)."""

    def __init__(
        self,
        core: StackedCore,
        operators: list[JacobianOperator],
        input_jacobians: list[Tensor | None],
    ) -> None:
        super().__init__(operators[0].shape[0], core.state_size, core._like())
        self._core, self._operators, self._inputs = core, operators, input_jacobians

    def _rescale(self, scale: float) -> None:
        self._scale_factor = scale  # each layer's operator folds it into its own product

    def _apply(self, e: Tensor, out: Tensor, rows: slice) -> Tensor:
        below = None  # the hidden rows of the previous layer's block of the result, (b, H, p)
        for layer, columns, operator, input_jacobian in zip(
            self._core.stack(),
            self._core.layer_columns,
            self._operators,
            self._inputs,
            strict=True,
        ):
            block = e.new_empty(e.shape[0], layer.state_size, e.shape[2])
            operator.apply_block(e[:, columns], block, rows, self._scale_factor)
            if below is not None and input_jacobian is not None:
                block.baddbmm_(input_jacobian[rows], below)
            out[:, columns].copy_(block)
            below = block[:, layer.hidden_columns]
        return out


class StackedCore(RecurrentCore):
    """L layers of one built-in kind; state [s^1, ..., s^L], readout on the top hidden units.

    Parameters are the layers' in order (``layers.0.weight_ih``, ``layers.0.weight_hh``, ...),
    so layer l's copy over from ``torch.nn.RNN/LSTM/GRU(num_layers=L)``'s ``*_l{l}`` tensors.

    Args:
        layers: the L >= 1 layers, bottom first, all of one class; layer l > 1 must read the
            hidden units of the layer below (``input_size`` = the previous ``hidden_size``).
    """

    cache_type = StackedStepCache

    def __init__(self, layers: Sequence[AnalyticCore]) -> None:
        if not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"layers must be a non-empty sequence of cores, got {layers!r}")
        kind = type(layers[0])
        for index, layer in enumerate(layers):
            if not isinstance(layer, AnalyticCore) or type(layer) is not kind:
                raise TypeError(
                    f"layers must all be built-in cores of one class ({kind.__name__}), got "
                    f"{type(layer).__name__} at index {index}"
                )
            if index and layer.input_size != layers[index - 1].hidden_size:
                raise ValueError(
                    f"layer {index} has input_size={layer.input_size} but reads the hidden "
                    f"units of layer {index - 1} (hidden_size={layers[index - 1].hidden_size})"
                )
        super().__init__(layers[0].input_size, layers[-1].hidden_size)
        self.layers = nn.ModuleList(layers)
        offsets = [0]
        for layer in layers:
            offsets.append(offsets[-1] + layer.state_size)
        self.layer_columns = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def stack(self) -> tuple[AnalyticCore, ...]:
        """The layers, bottom first (``layers`` as a typed tuple)."""
        return tuple(layer for layer in self.layers if isinstance(layer, AnalyticCore))

    @property
    def kind(self) -> str:
        return self.stack()[0].kind

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def state_size(self) -> int:
        return self.layer_columns[-1].stop

    @property
    def hidden_columns(self) -> slice:
        top = self.layer_columns[-1].start
        inner = self.stack()[-1].hidden_columns
        return slice(top + inner.start, top + inner.stop)

    def _like(self) -> Tensor:
        return self.stack()[0].weight_hh

    def _batch_size(self, cache: StackedStepCache) -> int:
        return cache.layers[0].x.shape[0]

    # ----------------------------------------------------------------- transition
    def _forward(self, x: Tensor, s: Tensor) -> Tensor:
        states = []
        for layer, columns in zip(self.stack(), self.layer_columns, strict=True):
            states.append(layer._forward(x, s[:, columns]))
            x = states[-1][:, layer.hidden_columns]
        return torch.cat(states, dim=1)

    def _step(self, x: Tensor, s: Tensor) -> tuple[Tensor, StackedStepCache]:
        states, caches = [], []
        for layer, columns in zip(self.stack(), self.layer_columns, strict=True):
            state, cache = layer._step(x, s[:, columns])
            states.append(state)
            caches.append(cache)
            x = state[:, layer.hidden_columns]
        return torch.cat(states, dim=1), StackedStepCache(tuple(caches))

    # ----------------------------------------------------------------- derivative products
    def _downward(self, cache: StackedStepCache, v: Tensor) -> list[Tensor]:
        """The row vector each layer's state s'^l receives, [u^1, ..., u^L] (each (B, d_l)):
        u^L = v^L, u^{l−1} = v^{l−1} + (u^l · C_l embedded in layer l−1's hidden columns)."""
        adjoints = [v[:, columns] for columns in self.layer_columns]
        layers = self.stack()
        for index in range(len(layers) - 1, 0, -1):
            layer, below = layers[index], layers[index - 1]
            handed_down = layer._input_vjp(cache.layers[index], adjoints[index])
            adjoints[index - 1] = adjoints[index - 1] + below.state_gradient(handed_down)
        return adjoints

    def _vjp(self, cache: StackedStepCache, v: Tensor) -> Tensor:
        adjoints = self._downward(cache, v)
        return torch.cat(
            [
                layer._vjp(layer_cache, u)
                for layer, layer_cache, u in zip(self.stack(), cache.layers, adjoints, strict=True)
            ],
            dim=1,
        )

    def _local_vjp(self, cache: StackedStepCache, m: Tensor) -> tuple[Tensor, ...]:
        adjoints = self._downward(cache, m)
        return tuple(
            grad
            for layer, layer_cache, u in zip(self.stack(), cache.layers, adjoints, strict=True)
            for grad in layer._local_vjp(layer_cache, u)
        )

    def _input_jacobians(self, cache: StackedStepCache) -> list[Tensor | None]:
        """[None, C_2, ..., C_L]: C_l = ∂s'^l/∂h'^{l−1}, (B, d_l, H)."""
        inputs: list[Tensor | None] = [None]
        return inputs + [
            layer._input_jacobian(layer_cache)
            for layer, layer_cache in zip(self.stack()[1:], cache.layers[1:], strict=True)
        ]

    def _upward(self, inputs: list[Tensor | None], blocks: list[Tensor]) -> Tensor:
        """Stack per-layer (B, d_l, *rest) terms into (B, d, *rest), adding to block l the input
        Jacobian C_l (``inputs[l]``) applied to the hidden rows of the finished block l − 1."""
        finished = [blocks[0]]
        for below, block, input_jacobian in zip(
            self.stack()[:-1], blocks[1:], inputs[1:], strict=True
        ):
            hidden_rows = finished[-1][:, below.hidden_columns]
            finished.append(block + torch.einsum("bij,bj...->bi...", input_jacobian, hidden_rows))
        return torch.cat(finished, dim=1)

    def _jacobian(self, cache: StackedStepCache) -> Tensor:
        batch, d = self._batch_size(cache), self.state_size
        like = self._like()
        blocks = []
        for layer, layer_cache, columns in zip(
            self.stack(), cache.layers, self.layer_columns, strict=True
        ):
            block = like.new_zeros(batch, layer.state_size, d)
            block[:, :, columns] = layer._jacobian(layer_cache)
            blocks.append(block)
        return self._upward(self._input_jacobians(cache), blocks)

    def _jacobian_operator(self, cache: StackedStepCache) -> JacobianOperator:
        operators = [
            layer._jacobian_operator(layer_cache)
            for layer, layer_cache in zip(self.stack(), cache.layers, strict=True)
        ]
        return _StackedJacobianOperator(self, operators, self._input_jacobians(cache))

    def _local_jacobian(self, cache: StackedStepCache) -> tuple[Tensor, ...]:
        inputs, jacobians = self._input_jacobians(cache), []
        for index, (layer, layer_cache) in enumerate(zip(self.stack(), cache.layers, strict=True)):
            for local in layer._local_jacobian(layer_cache):  # (B, d_l, *θ.shape)
                blocks = [
                    local.new_zeros(local.shape[0], other.state_size, *local.shape[2:])
                    for other in self.stack()
                ]
                blocks[index] = local
                jacobians.append(self._upward(inputs, blocks))
        return tuple(jacobians)
