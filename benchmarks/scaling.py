"""Tokens/s and memory against hidden size: how each learner's cost grows with the model.

A tanh RNN with H hidden units, batch B = 10, sequences of T = 20 random tokens of the toy task's
shape (configuration (a) of ``learners.py`` with H varied), for H = 8 ... 256. Learners: BP(lambda)
(lambda = 1, gamma = 0.9) on its trace path (O(B·H⁴) work and O(B·H³) memory per token), on its
replay path (O(t·B·H²) work at token t, O(T·B·H) memory) and on its forward-view fast path, BPTT,
RTRL (O(B·H⁴) work, O(B·H³) memory), and the plain PyTorch BPTT loop of ``learners.py``.

Each (H, learner) runs in a fresh process, ``--repeats`` times alternated with the other
learners of that size; the best run is kept. Tokens/s: whole batches of sequences for
``--seconds``, except for the trace path and RTRL, whose cost per token is the same at every token
after the second: their rate is measured over tokens 3, 4, ... of one sequence, stopping after
``--seconds`` (at least 3 tokens). Memory: peak RSS minus the RSS after set-up. Writes the table
as JSON and the figure (log-log, two panels) to ``--figure``. Usage::

    python benchmarks/scaling.py [--sizes 8 16 32 64 128 256] [--seconds 2] [--repeats 2]
                                 [--threads N] [--out benchmarks/results/scaling.json]
                                 [--figure docs/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
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
from stable_baselines3.common.callbacks import BaseCallback

SCRIPT = Path(__file__).resolve()
LEARNERS = {  # name in learners.py -> label in the figure
    "bp_lambda_trace": "BP(λ), trace path",
    "bp_lambda_replay": "BP(λ), replay",
    "bp_lambda_forward_view": "BP(λ), forward view",
    "bptt": "BPTT",
    "rtrl": "RTRL",
    "plain_bptt": "plain PyTorch BPTT",
}
PER_TOKEN = {"bp_lambda_trace", "rtrl"}  # measured over the tokens of one sequence


class TimedTokens(BaseCallback):
    """Stops learning once ``seconds`` have passed since the second token (and 3 more tokens
    were timed), recording the time of every step."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.times = seconds, []

    def _on_step(self) -> bool:
        self.times.append(time.perf_counter())
        timed = len(self.times) - 2
        return timed < 3 or self.times[-1] - self.times[1] < self.seconds


def child(spec: dict) -> dict:
    """One (hidden size, learner) measurement in this fresh process."""
    config = replace(
        CONFIGS["a"], name=f"a-H{spec['hidden_size']}", hidden_size=spec["hidden_size"]
    )
    name, seconds = spec["learner"], spec["seconds"]
    env = replay_env(config)
    learner = PlainBPTT(config, env) if name == "plain_bptt" else build_learner(name, config, env)
    setup_rss = peak_rss_bytes()
    if name in PER_TOKEN:
        timer = TimedTokens(seconds)
        learner.learn(episodes=1, callback=timer)
        steps = len(timer.times) - 2
        rate = steps * config.batch_size / (timer.times[-1] - timer.times[1])
    else:

        def one_batch() -> int:
            if name == "plain_bptt":
                return learner.learn_one_batch()
            learner.learn(episodes=1)
            return config.batch_size * config.sequence_length

        one_batch()  # warm-up
        tokens, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or tokens == 0:
            tokens += one_batch()
        rate = tokens / elapsed
    return {
        "hidden_size": spec["hidden_size"],
        "learner": name,
        "tokens_per_s": rate,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_setup_bytes": setup_rss,
    }


def plot(rows: list[dict], path: Path, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in LEARNERS.items():
        mine = sorted((r for r in rows if r["learner"] == name), key=lambda r: r["hidden_size"])
        if not mine:
            continue
        sizes = [r["hidden_size"] for r in mine]
        style = dict(marker="o", label=label, linestyle="--" if name == "plain_bptt" else "-")
        speed.plot(sizes, [r["tokens_per_s"] for r in mine], **style)
        growth = [max(r["peak_rss_bytes"] - r["rss_after_setup_bytes"], 1e5) / 1e6 for r in mine]
        memory.plot(sizes, growth, **style)
    for axis, title in ((speed, "tokens per second"), (memory, "peak RSS over set-up (MB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("hidden units H")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    speed.legend(fontsize=8)
    figure.suptitle(
        f"tanh RNN, batch 10, T = 20, {info['torch_threads']} torch thread(s); {info['cpu_model']} "
        f"({info['cpu_cores']} cores, shared)",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs; best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scaling.json"))
    parser.add_argument("--figure", type=Path, default=Path("docs/scaling.png"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    info = machine_info()
    print(describe(info))
    print(f"\n{'H':>5} {'learner':<24} {'tokens/s':>12} {'peak RSS growth MB':>19}")
    rows = []
    for size in args.sizes:
        best: dict[str, dict] = {}
        for _ in range(args.repeats):  # alternate the learners, keep each one's best run
            for learner in args.learners:
                spec = {"hidden_size": size, "learner": learner, "seconds": args.seconds}
                row = run_child(SCRIPT, spec, args.threads)
                if learner not in best or row["tokens_per_s"] > best[learner]["tokens_per_s"]:
                    best[learner] = row
        for learner, row in best.items():
            rows.append(row)
            growth = (row["peak_rss_bytes"] - row["rss_after_setup_bytes"]) / 1e6
            print(
                f"{size:>5} {learner:<24} {row['tokens_per_s']:>12,.1f} {growth:>19,.1f}",
                flush=True,
            )
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_report(args.out, {"machine": info, "results": rows})
    plot(rows, args.figure, info)


if __name__ == "__main__":
    main()
