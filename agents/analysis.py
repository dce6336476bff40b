"""Diagnostics: how well does a synthesiser predict the true future gradient?

The paper's main diagnostic is the cosine alignment between the synthetic gradient g(s_t) and the
future gradient that backpropagation through time would deliver to s_t,

    G_t = sum_{tau > t} gamma^(tau - t - 1) dL_tau/ds_t,     G_{T-1} = 0,

computed here with torch autograd through the same sequences (independently of the learner's own
recursions).
"""

from __future__ import annotations

import numpy as np
import torch

from agents.base import make_env
from agents.cores import RecurrentCore
from agents.learner_envs import as_vector_env, sequence_ended
from agents.sequence_learner import SequenceLearner
from bpl_envs.checks import check_int

__all__ = ["alignment", "collect_sequences", "future_gradients"]


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def future_gradients(
    core: RecurrentCore,
    readout: torch.nn.Module,
    loss,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    scored: torch.Tensor,
    gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """States and discounted future gradients of a batch of sequences, by autograd.

    Each sequence's own loss sum_t L_t is differentiated (no batch mean). Discounting: the
    state fed into transition t+1 passes through a node that scales gradients by gamma, and G_t
    is the gradient arriving at that node, so every hop after the first is discounted once.

    Args:
        core: a recurrent core (``forward(x, s)``, ``initial_state``, ``hidden``).
        readout: maps h (B, H) to predictions (B, n_out).
        loss: a :class:`bpl_envs.losses.Loss`.
        inputs: (T, B, input_size). targets: (T, B, n_out). scored: (T, B), 1 where scored.
        gamma: discount in [0, 1].

    Returns:
        (states (T, B, state_size), G (T, B, state_size)), detached; G[T-1] = 0.
    """
    steps, batch = inputs.shape[:2]
    state = core.initial_state(batch).to(inputs.dtype)
    state.requires_grad_(True)
    states: list[torch.Tensor] = []
    fed: list[torch.Tensor] = []
    total = inputs.new_zeros(())
    with torch.enable_grad():
        for t in range(steps):
            if t > 0:
                state = _ScaleGradient.apply(states[-1], gamma)
                fed.append(state)
            state = core(inputs[t], state)
            states.append(state)
            prediction = readout(core.hidden(state))
            total = total + (loss.value(prediction, targets[t]) * scored[t]).sum()
        future = list(torch.autograd.grad(total, fed, allow_unused=True)) if fed else []
    future = [
        torch.zeros_like(s) if g is None else g for g, s in zip(future, states[:-1], strict=True)
    ]
    future.append(torch.zeros_like(states[-1]))
    return torch.stack(states).detach(), torch.stack(future).detach()


@torch.no_grad()
def collect_sequences(learner: SequenceLearner, env, n_sequences: int, seed: int | None = None):
    """Step ``env`` with the learner's predictions (no learning) and keep what it emitted.

    Returns:
        (inputs (T, N, input_size), targets (T, N, n_out), scored (T, N)) as tensors in the
        learner's dtype, N >= n_sequences (whole batches of the vector env).
    """
    check_int("n_sequences", n_sequences, minimum=1)
    env = as_vector_env(make_env(env))
    batches: list[tuple[np.ndarray, ...]] = []
    collected = 0
    while collected < n_sequences:
        obs, _ = env.reset(seed=seed if not batches else None)
        state, xs, ys, scored, done = None, [], [], [], False
        while not done:
            xs.append(obs)
            prediction, state = learner.predict(obs, state)
            obs, _, terminated, truncated, info = env.step(prediction.astype(np.float32))
            if "final_info" in info:  # AutoresetMode.SAME_STEP: the terminal step's info
                info = info["final_info"]
            done = bool(sequence_ended(terminated, truncated, info).all())
            ys.append(info["target"])
            scored.append(info["scored"])
        batches.append((np.stack(xs), np.stack(ys), np.stack(scored)))
        collected += env.num_envs

    def cat(i):
        return torch.as_tensor(
            np.concatenate([b[i] for b in batches], axis=1),
            dtype=learner.dtype,
            device=learner.device,
        )

    return cat(0), cat(1), cat(2).to(learner.dtype)


def alignment(
    learner: SequenceLearner, env, n_sequences: int = 100, seed: int | None = None
) -> np.ndarray:
    """Cosine similarity between g(s_t) and the true future gradient G_t, per time step.

    Uses the learner's ``synthesiser`` and ``gamma``; G_t comes from :func:`future_gradients`.
    The last step (where G = 0 and g := 0) is left out.

    Args:
        learner: a learner with a ``synthesiser`` (e.g. :class:`~agents.bp_lambda.BPLambda`).
        env: env id or env producing the sequences (same task as the learner's).
        n_sequences: how many sequences to average over (rounded up to whole batches).
        seed: seed of the env's first reset.

    Returns:
        (T - 1,) mean cosine over sequences for t = 0 .. T-2 (0 where g or G is zero).
    """
    synthesiser = getattr(learner, "synthesiser", None)
    if synthesiser is None:
        raise TypeError(f"{type(learner).__name__} has no synthesiser to measure")
    inputs, targets, scored = collect_sequences(learner, env, n_sequences, seed)
    states, future = future_gradients(
        learner.core,
        learner.readout,
        learner.loss,
        inputs,
        targets,
        scored,
        getattr(learner, "gamma", 1.0),
    )
    with torch.no_grad():
        synthetic = synthesiser(states.reshape(-1, states.shape[-1])).reshape(states.shape)
        cosine = torch.nn.functional.cosine_similarity(synthetic, future, dim=-1, eps=1e-30)
    return cosine[:-1].mean(dim=1).cpu().numpy()
