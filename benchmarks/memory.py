"""Peak memory against sequence length: BP(lambda)'s trace path and windowed replay stay flat.

One batch of sequences of length T = 100, 1000, 10000 (configuration (a)'s shape: tanh RNN
H=30, B=10, a loss at the last token) is learned by each learner in a fresh Python process; the
process's peak RSS (``getrusage`` maxrss) and its growth over the RSS after set-up (imports, env
data, learner) are reported. Learners: BP(lambda) on its trace path (memory independent of T by
construction) and on its replay path with a window of 10 tokens (bounded by the window and the
32-token block), BP(lambda)'s forward-view fast path and the BPTT learner (both store the
sequence), and a plain PyTorch BPTT loop (``torch.nn.RNN`` with autograd). Usage::

    python benchmarks/memory.py [--lengths 100 1000 10000] [--threads N]
                                [--out benchmarks/results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from common import (
    CONFIGS,
    describe,
    machine_info,
    peak_rss_bytes,
    replay_env,
    run_child,
    write_report,
)
from learners import PlainBPTT, build_learner

SCRIPT = Path(__file__).resolve()
CONFIG = CONFIGS["a"]
LEARNERS = (
    "bp_lambda_trace",
    "bp_lambda_replay_window_10",
    "bp_lambda_forward_view",
    "bptt",
    "plain_bptt",
)


def child(spec: dict) -> dict:
    """Learn one batch of sequences of length ``spec["length"]`` in this fresh process."""
    env = replay_env(CONFIG, sequence_length=spec["length"])
    name = spec["learner"]
    learner = PlainBPTT(CONFIG, env) if name == "plain_bptt" else build_learner(name, CONFIG, env)
    setup = peak_rss_bytes()
    if name == "plain_bptt":
        learner.learn_one_batch()
    else:
        learner.learn(episodes=1)
    return {
        "learner": name,
        "length": spec["length"],
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_setup_bytes": setup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[100, 1000, 10000])
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    info = machine_info()
    print(describe(info))
    print(f"\nconfiguration (a): {CONFIG.description}; one batch of sequences of length T")
    print(f"{'learner':<24} {'T':>6} {'peak RSS MB':>12} {'growth MB':>10} {'vs shortest T':>14}")
    rows = []
    for learner in args.learners:
        first = None
        for length in args.lengths:
            row = run_child(SCRIPT, {"learner": learner, "length": length}, args.threads)
            first = first or row
            row["peak_over_shortest"] = row["peak_rss_bytes"] / first["peak_rss_bytes"]
            rows.append(row)
            growth = row["peak_rss_bytes"] - row["rss_after_setup_bytes"]
            print(
                f"{learner:<24} {length:>6} {row['peak_rss_bytes'] / 1e6:>12,.1f} "
                f"{growth / 1e6:>10,.1f} {row['peak_over_shortest']:>13.3f}x",
                flush=True,
            )
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_report(args.out, {"machine": info, "config": CONFIG.name, "results": rows})


if __name__ == "__main__":
    main()
