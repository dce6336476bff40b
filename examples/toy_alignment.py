"""The BP(lambda) paper's toy experiment: how well does the synthesiser learn the future gradient?

LineDraw (a cue at t = 0, a 2-D target scored at the last step), a linear RNN with H = 30 whose
weights and readout stay frozen at their random initialisation; only the synthesiser learns
(Adam, lr 1e-4, batch 10, 1000 updates, gamma = beta = 1). After training we measure the cosine
alignment between g(s_t) and the true future gradient G_t (autograd through the same sequences)
at every time step, for lambda in {0, 0.25, 0.5, 0.75, 1}.

    python examples/toy_alignment.py            # ~40 s on 2 cores; writes docs/toy_alignment.png
    python examples/toy_alignment.py --updates 200 --out toy.png
"""

import argparse
import pathlib
import time

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.analysis import alignment
from agents.bp_lambda import BPLambda

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
parser.add_argument("--updates", type=int, default=1000, help="batches of sequences")
parser.add_argument("--batch", type=int, default=10)
parser.add_argument("--sequence-length", type=int, default=10)
parser.add_argument("--lr-synth", type=float, default=1e-4)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="docs/toy_alignment.png", help="where to save the plot")
parser.add_argument(
    "--threads", type=int, default=1, help="torch threads (tiny matrices run fastest on one)"
)
args = parser.parse_args()
torch.set_num_threads(args.threads)

# --- set-up: one env id, the same seed for every lambda (so the frozen RNN is the same) -------
env_id = "bpl/LineDraw-v0"
results = {}
start = time.perf_counter()

# --- the loop: train a synthesiser per lambda, then measure alignment per time step ----------
for lam in args.lambdas:
    env = gym.make_vec(env_id, num_envs=args.batch, sequence_length=args.sequence_length)
    learner = BPLambda(
        env,
        core="rnn",
        activation="identity",
        hidden_size=30,
        lam=lam,
        gamma=1.0,
        sg_weight=1.0,
        lr_core=0.0,
        lr_readout=0.0,
        lr_synth=args.lr_synth,
        seed=args.seed,
    )
    learner.learn(episodes=args.updates, progress_bar=True)
    eval_env = gym.make_vec(env_id, num_envs=args.batch, sequence_length=args.sequence_length)
    results[lam] = alignment(learner, eval_env, n_sequences=100, seed=args.seed + 1)
    print(
        f"lambda={lam:<5} mean alignment {results[lam].mean():.3f}  per step: "
        + " ".join(f"{a:.2f}" for a in results[lam])
    )

print(f"done in {time.perf_counter() - start:.0f} s")

# --- the plot --------------------------------------------------------------------------------
fig, ax = plt.subplots(figsize=(5, 3.5))
colours = plt.cm.viridis(np.linspace(0, 0.9, len(results)))
for colour, (lam, curve) in zip(colours, results.items(), strict=True):
    ax.plot(np.arange(len(curve)), curve, marker="o", ms=3, color=colour, label=f"λ = {lam:g}")
ax.set_xlabel("time step t")
ax.set_ylabel("cos(g(s_t), G_t)")
ax.set_title(f"LineDraw, frozen linear RNN, {args.updates} updates")
ax.set_ylim(-0.1, 1.05)
ax.legend(fontsize=8)
fig.tight_layout()
pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=120)
print(f"saved {args.out}")
