"""Compare the learners on sequential digits: same seed, same budget, test accuracy.

Each learner reads scikit-learn's 8x8 digits row by row (bpl/SequentialDigits-v0: 8 tokens of 8
pixels, 10-way cross-entropy at the last row only), so credit must travel back through time to
the early rows. Every learner gets the same core, hyper-parameters, seed (hence the same training
batches) and number of updates; each is then scored on the whole test split.

    python examples/compare_digits.py                      # the table in the README
    python examples/compare_digits.py --updates 300        # a quick look

The learners: BPTT (the gold standard), truncated BPTT and DNI at truncations n = 1 and 3, no
synthetic gradient, and BP(lambda) at lambda = 0 (one-step bootstrap, i.e. DNI with n = 1) and
lambda = 1 (the future gradient learned without bootstrapping).
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.evaluation import evaluate_sequences, last_step_targets
from agents.registry import get_learner

# ---------------------------------------------------------------------------------- arguments
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "--updates", type=int, default=2000, help="batches of sequences per learner (one update each)"
)
parser.add_argument("--batch-size", type=int, default=50, help="sequences per batch")
parser.add_argument("--core", default="lstm", choices=["lstm", "rnn"])
parser.add_argument("--hidden-size", type=int, default=16)
parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, core and readout")
parser.add_argument("--lr-synth", type=float, default=1e-3, help="synthesiser learning rate")
parser.add_argument("--gamma", type=float, default=0.9, help="discount of synthetic gradients")
parser.add_argument(
    "--sg-weight",
    type=float,
    default=0.1,
    help="beta: weight of the synthetic gradient in the core's signal",
)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--threads",
    type=int,
    default=1,
    help="torch CPU threads (1 is fastest for these small matrices)",
)
args = parser.parse_args()

# ----------------------------------------------------------------------------------- set-up
torch.set_num_threads(args.threads)
ENV_ID = "bpl/SequentialDigits-v0"
common = {
    "core": args.core,
    "hidden_size": args.hidden_size,
    "lr_core": args.lr,
    "lr_readout": args.lr,
    "n_envs": args.batch_size,
    "seed": args.seed,
}
synthetic = {"gamma": args.gamma, "sg_weight": args.sg_weight, "lr_synth": args.lr_synth}
lineup = [  # (label, registry name, the learner's own hyper-parameters)
    ("BPTT", "bptt", {}),
    ("truncated BPTT, n=1", "tbptt", {"n": 1}),
    ("truncated BPTT, n=3", "tbptt", {"n": 3}),
    ("DNI, n=1", "dni", {"n": 1, **synthetic}),
    ("DNI, n=3", "dni", {"n": 3, **synthetic}),
    ("no synthetic gradient", "nosg", {}),
    ("BP(0)", "bp_lambda", {"lam": 0.0, **synthetic}),
    ("BP(1)", "bp_lambda", {"lam": 1.0, **synthetic}),
]

# The whole test split, scored at the last row only.
inputs, labels = gym.make(ENV_ID, split="test").unwrapped.dataset()
steps = inputs.shape[1]
targets = last_step_targets(labels, n_classes=10, sequence_length=steps)
scored = np.arange(steps) == steps - 1

# ----------------------------------------------------------------------- train and evaluate
results = []
for label, name, hyperparameters in tqdm(lineup, desc="learners", unit="learner"):
    learner = get_learner(name)(ENV_ID, **common, **hyperparameters)
    start = time.perf_counter()
    learner.learn(episodes=args.updates, progress_bar=True)
    seconds = time.perf_counter() - start
    test = evaluate_sequences(learner, inputs, targets, scored)
    results.append((label, test["accuracy"], test["loss"], seconds))
    tqdm.write(f"{label:<24} test accuracy {test['accuracy']:.3f}  ({seconds:.0f} s)")

# ------------------------------------------------------------------------------- the table
print(
    f"\n{args.core.upper()} H={args.hidden_size}, batch {args.batch_size}, {args.updates} "
    f"updates, lr {args.lr:g}, seed {args.seed}; test split: {len(labels)} digits\n"
)
print(f"| {'learner':<24} | test accuracy | test loss | train time (s) |")
print(f"|{'-' * 26}|---------------|-----------|----------------|")
for label, accuracy, loss, seconds in results:
    print(f"| {label:<24} | {accuracy:>13.3f} | {loss:>9.3f} | {seconds:>14.1f} |")
