"""Independent gradients for the baseline learners' tests: autograd through torch.nn.RNN /
LSTM / GRU, stacked or not (weights copied from our cores), and through the cores' plain
differentiable ``forward``, with the losses written with torch.nn.functional. Nothing here uses
the cores' derivative code or the learners' code.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from agents.cores import FunctionalCore, GRUCore, LSTMCore, RNNCore, StackedCore
from bpl_envs.replay import SequenceReplayVectorEnv

ADAM = {"betas": (0.9, 0.98), "eps": 1e-9}

EQUIVALENCE_CASES = [
    (core, synth_hidden, lam, gamma)
    for core in ("rnn", "lstm")
    for synth_hidden in (None, 5)
    for lam in (0.0, 0.5, 1.0)
    for gamma in (0.9, 1.0)
]
"""(core, synth_hidden, lam, gamma) grid of the BP(lambda) forward/backward equivalence tests."""

NEW_CORES = [
    "gru",
    "rnn-2",
    "lstm-2",
    "gru-2",
    "functional-rnn",
    "functional-gru",
    "functional-leaky",
]
"""Cores beyond the one-layer RNN and LSTM, by the names :func:`core_kwargs` knows."""

NEW_CORE_CASES = [
    (core, synth_hidden, lam, gamma)
    for core in NEW_CORES
    for synth_hidden, lam, gamma in [(None, 0.5, 0.9), (5, 1.0, 1.0)]
]
"""A smaller equivalence grid for the new cores: both synthesisers, a bootstrapped and an
unbootstrapped lambda."""


class LeakyRNNCell(torch.nn.Module):
    """A user-defined cell for the functional core: s' = (1 - a) s + a tanh(W x + U s + b)."""

    def __init__(self, input_size, hidden_size, leak=0.5):
        super().__init__()
        self.input_size, self.hidden_size, self.leak = input_size, hidden_size, leak
        self.input = torch.nn.Linear(input_size, hidden_size)
        self.recurrent = torch.nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x, s):
        return (1 - self.leak) * s + self.leak * torch.tanh(self.input(x) + self.recurrent(s))


FUNCTIONAL_CELLS = {
    "functional-rnn": torch.nn.RNNCell,
    "functional-gru": torch.nn.GRUCell,
    "functional-leaky": LeakyRNNCell,
}


def core_kwargs(name, input_size, hidden_size):
    """A learner's core arguments for a core name: "rnn", "lstm", "gru", "KIND-L" (L stacked
    layers) or "functional-rnn/gru/leaky" (torch.nn.RNNCell, torch.nn.GRUCell or
    :class:`LeakyRNNCell` in a FunctionalCore, its weights drawn with torch's seed 0)."""
    if name in FUNCTIONAL_CELLS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            cell = FUNCTIONAL_CELLS[name](input_size, hidden_size)
        return {"core": FunctionalCore(cell)}
    if "-" in name:
        kind, layers = name.split("-")
        return {"core": kind, "num_layers": int(layers)}
    return {"core": name}


def make_data(loss, batch, steps, n_in, n_out, seed=0, n_batches=1):
    """Random sequences (float32-exact float64 tokens), targets and a (T,) scored mask whose last
    step is scored."""
    rng = np.random.default_rng(seed)
    n = batch * n_batches
    inputs = rng.normal(size=(n, steps, n_in)).astype(np.float32).astype(np.float64)
    if loss == "ce":
        targets = np.eye(n_out)[rng.integers(0, n_out, size=(n, steps))]
    elif loss == "bce":
        targets = rng.integers(0, 2, size=(n, steps, n_out)).astype(np.float64)
    else:
        targets = rng.normal(size=(n, steps, n_out))
    targets = targets.astype(np.float32).astype(np.float64)
    scored = rng.random(steps) < 0.6
    scored[-1] = True
    return inputs, targets, scored


def replay_env(loss, inputs, targets, scored, batch):
    return SequenceReplayVectorEnv(inputs, targets, loss, scored, num_envs=batch)


def randomise(module, seed, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def step_loss(kind, prediction, target):
    """Per-sequence loss of one step, (B,), by torch.nn.functional."""
    if kind == "mse":
        return F.mse_loss(prediction, target, reduction="none").mean(-1)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(prediction, target, reduction="none").mean(-1)
    if kind == "ce":
        return F.cross_entropy(prediction, target.argmax(-1), reduction="none")
    raise ValueError(kind)


class ForwardTwin:
    """A copy of a core run token by token through its plain differentiable ``forward`` (for the
    cores torch.nn has no twin of, e.g. the identity RNN)."""

    def __init__(self, core):
        self.core = copy.deepcopy(core)
        self.parameters = list(self.core.parameters())

    def run(self, x, s0):
        """x (B, L, n_in), s0 (B, d) → hidden units (B, L, H), last state (B, d)."""
        state, hidden = s0, []
        for t in range(x.shape[1]):
            state = self.core(x[:, t], state)
            hidden.append(self.core.hidden(state))
        return torch.stack(hidden, dim=1), state


def twin_of(core):
    """The torch.nn twin of a core where torch.nn has one, else a :class:`ForwardTwin`."""
    layer = core.layers[0] if isinstance(core, StackedCore) else core
    if isinstance(core, FunctionalCore) or getattr(layer, "activation", "tanh") != "tanh":
        return ForwardTwin(core)
    return Twin(core)


class Twin:
    """torch.nn.RNN / LSTM / GRU (num_layers = the core's layers) holding a built-in core's
    weights (a single bias as b_ih = b, b_hh = 0; the GRU's two biases one to one)."""

    LAYERS = {RNNCore: torch.nn.RNN, LSTMCore: torch.nn.LSTM, GRUCore: torch.nn.GRU}

    def __init__(self, core):
        layers = list(core.layers) if isinstance(core, StackedCore) else [core]
        self.net = self.LAYERS[type(layers[0])](
            core.input_size, core.hidden_size, num_layers=len(layers), batch_first=True
        )
        self.net.double()
        self.hidden_size, self.lstm = core.hidden_size, isinstance(layers[0], LSTMCore)
        self.parameters = []
        with torch.no_grad():
            for index, layer in enumerate(layers):
                names = [
                    f"{name}_l{index}" for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                tensors = [getattr(self.net, name) for name in names]
                tensors[0].copy_(layer.weight_ih)
                tensors[1].copy_(layer.weight_hh)
                if isinstance(layer, GRUCore):
                    tensors[2].copy_(layer.bias_ih)
                    tensors[3].copy_(layer.bias_hh)
                else:
                    tensors[2].copy_(layer.bias)
                    tensors[3].zero_()
                    tensors = tensors[:3]
                self.parameters += tensors

    def run(self, x, s0):
        """x (B, L, n_in), s0 (B, d) → top hidden units (B, L, H), last state (B, d)."""
        layers, width = self.net.num_layers, s0.shape[1] // self.net.num_layers
        blocks = s0.view(s0.shape[0], layers, width).transpose(0, 1)  # (layers, B, d_l)
        H = self.hidden_size
        if self.lstm:
            out, (h, c) = self.net(x, (blocks[..., :H].contiguous(), blocks[..., H:].contiguous()))
            final = torch.cat((h, c), dim=2)
        else:
            out, final = self.net(x, blocks.contiguous())
        return out, final.transpose(0, 1).reshape(s0.shape)


def chunked_reference(
    core, readout, kind, inputs, targets, scored, n=None, synthesiser=None, sg_weight=0.0, gamma=1.0
):
    """Truncated BPTT over chunks of n tokens (None: the whole sequence), by autograd through
    the core's twin (:func:`twin_of`). With a synthesiser, DNI: sg_weight * g(s_end).s_end joins
    each non-final chunk's loss, and each chunk that starts at a boundary s_k yields the
    discounted n-step target d/ds_k [sum_i gamma^i L_{k+1+i} + gamma^len g(s_end).s_end].

    Returns:
        (core grads in the core's parameter order, readout grads [W, b], synthesiser grads or
        None) of the batch-mean losses summed over the sequences' steps.
    """
    twin, head = twin_of(core), copy.deepcopy(readout)
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    batch, steps = x.shape[:2]
    n = steps if n is None else n
    params = twin.parameters + list(head.parameters())
    grads = [torch.zeros_like(p) for p in params]
    state = torch.zeros(batch, core.state_size, dtype=torch.float64)
    boundaries = []
    for start in range(0, steps, n):
        stop = min(start + n, steps)
        s0 = state.detach().requires_grad_(True)
        hidden, s_end = twin.run(x[:, start:stop], s0)
        losses = [
            float(scored[t]) * step_loss(kind, head(hidden[:, t - start]), y[:, t]).mean()
            for t in range(start, stop)
        ]
        bonus = torch.zeros(())
        if synthesiser is not None and stop < steps:
            bonus = (synthesiser(s_end).detach() * s_end).sum()
        chunk_grads = torch.autograd.grad(
            sum(losses) + sg_weight * bonus, params, retain_graph=True
        )
        grads = [a + b for a, b in zip(grads, chunk_grads, strict=True)]
        if synthesiser is not None and start > 0:
            discounted = sum(gamma**i * loss for i, loss in enumerate(losses))
            discounted = discounted + gamma ** (stop - start) * bonus
            boundaries.append((s0.detach(), torch.autograd.grad(discounted, s0)[0]))
        state = s_end.detach()
    synth_grads = None
    if synthesiser is not None:
        synth_params = list(synthesiser.parameters())
        synth_grads = [torch.zeros_like(p) for p in synth_params]
        for s_k, target in boundaries:
            regression = 0.5 * (synthesiser(s_k) - target).square().sum(-1).mean()
            step = torch.autograd.grad(regression, synth_params)
            synth_grads = [a + b for a, b in zip(synth_grads, step, strict=True)]
    core_count = len(twin.parameters)
    return grads[:core_count], grads[core_count:], synth_grads


def online_chunked_reference(core, readout, kind, inputs, targets, scored, n, batch, lr):
    """Truncated BPTT applying Adam after every chunk, by autograd through ``core.forward`` on
    copies of the modules; sequences taken ``batch`` at a time in order. Returns the copies."""
    core, readout = copy.deepcopy(core), copy.deepcopy(readout)
    optimizers = [torch.optim.Adam(m.parameters(), lr=lr, **ADAM) for m in (core, readout)]
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    steps = x.shape[1]
    for first in range(0, x.shape[0], batch):
        rows = slice(first, first + batch)
        state = torch.zeros(batch, core.state_size, dtype=torch.float64)
        for start in range(0, steps, n):
            total = 0.0
            for t in range(start, min(start + n, steps)):
                state = core(x[rows, t], state)
                prediction = readout(core.hidden(state))
                total = total + float(scored[t]) * step_loss(kind, prediction, y[rows, t]).mean()
            for optimizer in optimizers:
                optimizer.zero_grad()
            total.backward()
            for optimizer in optimizers:
                optimizer.step()
            state = state.detach()
    return core, readout


def learner_grads(learner):
    """(core grads, readout grads) the learner accumulated."""
    return (
        [p.grad for p in learner.core.parameters()],
        [p.grad for p in learner.readout.parameters()],
    )


def assert_all_close(got, want, rtol=1e-10, atol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


# ------------------------------------------------------- BP(lambda): the forward view


def unroll(core, readout, loss, inputs, targets, scored):
    """States s_t, immediate gradients l_t (batch-mean loss) and Jacobians J_t, by autograd."""
    batch = inputs.shape[0]
    state = torch.zeros(batch, core.state_size, dtype=torch.float64)
    states, immediate, jacobians = [], [], []
    for t in range(inputs.shape[1]):
        x = inputs[:, t]
        full = torch.autograd.functional.jacobian(lambda s, x=x: core(x, s), state)
        jacobians.append(torch.stack([full[b, :, b, :] for b in range(batch)]))
        state = core(x, state).detach().requires_grad_(True)
        step_loss = loss.value(readout(core.hidden(state)), targets[:, t]).mean() * scored[t]
        immediate.append(
            torch.autograd.grad(step_loss, state, allow_unused=True)[0]
            if scored[t]
            else torch.zeros_like(state)
        )
        states.append(state.detach())
    return states, immediate, jacobians


def forward_view_update(synth, params, states, immediate, jacobians, lam, gamma, targets=None):
    """sum_t mean_b (G^lambda_t - g(s_t)) . dg(s_t)/dtheta with the lambda-target recursion
    G^l_t = (l_{t+1} + gamma[(1-lam) g_{t+1} + lam G^l_{t+1}]) J_{t+1}, g_{T-1} := 0, G_{T-1} = 0
    (or the given targets)."""
    steps = len(states)
    g = [synth(s).detach() for s in states[:-1]] + [torch.zeros_like(states[-1])]
    if targets is None:
        targets = [None] * steps
        targets[-1] = torch.zeros_like(states[-1])
        for t in range(steps - 2, -1, -1):
            row = immediate[t + 1] + gamma * ((1 - lam) * g[t + 1] + lam * targets[t + 1])
            targets[t] = torch.einsum("bi,bij->bj", row, jacobians[t + 1])
    total = [torch.zeros_like(p) for p in params]
    batch = states[0].shape[0]
    for t in range(steps - 1):
        with torch.enable_grad():
            out = synth(states[t])
            grads = torch.autograd.grad(out, params, (targets[t] - g[t]) / batch)
        total = [a + b for a, b in zip(total, grads, strict=True)]
    return total
