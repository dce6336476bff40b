"""How large are the reference code's LSTM conventions? One batch of copy-repeat, measured.

The authors' code differs from the exact BP(lambda) rule in five ways (docs/algorithm.md,
"Differences from the reference implementation"; ``BPLambda(conventions=...)``). This script
runs a freshly initialised LSTM (torch's uniform initialisation) through one batch of
copy-repeat sequences and measures, per token, what items 1 and 3 change:

- item 1: the output-gate path that the reference Jacobian omits, as a fraction of J's Frobenius
  norm and of the h -> h block's;
- item 3: the part of the core's one-step gradient that the reference signal drops (beta g_h * D
  reaching gates i, f, u), as a fraction of the core gradient summed over the sequence, with a
  synthesiser at random weights (its initial weights are zero, where the item changes nothing).

Items 2, 4 and 5 are exact factors (2, 2 and 1 / scored steps) and need no measurement.

    python examples/reference_conventions.py                       # H = 100, N = R = 5, batch 100
    python examples/reference_conventions.py --hidden-size 30 --pattern-length 2
"""

import argparse

import gymnasium as gym
import numpy as np
import torch

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.bp_lambda import BPLambda
from agents.reference_conventions import gates_read_cell_signal, no_output_gate_jacobian

# ---------------------------------------------------------------------------------- arguments
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--hidden-size", type=int, default=100, help="H (the paper: 100)")
parser.add_argument("--batch-size", type=int, default=100, help="sequences (the paper: 100)")
parser.add_argument("--pattern-length", type=int, default=5, help="copy-repeat N")
parser.add_argument("--repeats", type=int, default=5, help="copy-repeat R")
parser.add_argument("--sg-weight", type=float, default=1.0, help="beta (the paper: 1)")
parser.add_argument("--synth-scale", type=float, default=0.1, help="std of the random synthesiser")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

# ---------------------------------------------------------------------------------- set-up
torch.manual_seed(args.seed)
env = gym.make_vec(
    "bpl/CopyRepeat-v0",
    num_envs=args.batch_size,
    pattern_length=args.pattern_length,
    repeats=args.repeats,
)
learner = BPLambda(env, core="lstm", hidden_size=args.hidden_size, dtype="float64", seed=args.seed)
core, readout, synthesiser, loss = learner.core, learner.readout, learner.synthesiser, learner.loss
with torch.no_grad():
    for parameter in synthesiser.parameters():
        parameter.normal_(0.0, args.synth_scale)
H = args.hidden_size

# ---------------------------------------------------------------------------------- the batch
omitted_of_J, omitted_of_hh, exact_grads, reference_grads = [], [], None, None
obs, _ = env.reset(seed=args.seed)
state, done = core.initial_state(args.batch_size), False
with torch.no_grad():
    while not done:
        state, cache = core.step(torch.as_tensor(obs, dtype=torch.float64), state)
        prediction = readout(core.hidden(state))
        obs, _, terminated, _, info = env.step(prediction.float().numpy())
        done = bool(np.all(terminated))
        if "final_info" in info:
            info = info["final_info"]

        # item 1: J - J_ref is the output-gate term diag(sigma'(a_o) tanh(c')) W_o of dh'/dh
        jacobian = core.jacobian(cache)
        omitted = jacobian - no_output_gate_jacobian(core, cache)
        omitted_of_J.append((omitted.norm(dim=(1, 2)) / jacobian.norm(dim=(1, 2))).mean().item())
        omitted_of_hh.append(
            (omitted[:, :H, :H].norm(dim=(1, 2)) / jacobian[:, :H, :H].norm(dim=(1, 2)))
            .mean()
            .item()
        )

        # item 3: the core's one-step gradient for m = l + beta g, exact and as the reference
        target = torch.as_tensor(info["target"], dtype=torch.float64)
        scored = torch.as_tensor(np.asarray(info["scored"]), dtype=torch.float64)[:, None]
        loss_grad = loss.gradient(prediction, target) * scored / args.batch_size
        l_t = core.state_gradient(loss_grad @ readout.weight)
        g_t = torch.zeros_like(state) if done else synthesiser(state)
        signal = l_t + args.sg_weight * g_t
        reference = gates_read_cell_signal(core, cache, signal, args.sg_weight * g_t)
        exact_step = torch.cat([g.flatten() for g in core.local_vjp(cache, signal)])
        reference_step = torch.cat([g.flatten() for g in core.local_vjp(cache, reference)])
        exact_grads = exact_step if exact_grads is None else exact_grads + exact_step
        reference_grads = (
            reference_step if reference_grads is None else reference_grads + reference_step
        )

# ---------------------------------------------------------------------------------- report
tokens = len(omitted_of_J)
dropped = ((exact_grads - reference_grads).norm() / exact_grads.norm()).item()
print(
    f"copy-repeat N = {args.pattern_length}, R = {args.repeats} (T = {tokens}), LSTM H = {H}, "
    f"batch {args.batch_size}, seed {args.seed}"
)
print(
    f"item 1, omitted output-gate path / |J|_F: {min(omitted_of_J):.1%} to "
    f"{max(omitted_of_J):.1%} over the tokens (mean {np.mean(omitted_of_J):.1%})"
)
print(
    f"item 1, omitted output-gate path / |dh'/dh|_F: {min(omitted_of_hh):.1%} to "
    f"{max(omitted_of_hh):.1%} (mean {np.mean(omitted_of_hh):.1%})"
)
print(
    f"item 3, dropped part of the core gradient (synthesiser std {args.synth_scale}, "
    f"beta {args.sg_weight}): {dropped:.1%}"
)
