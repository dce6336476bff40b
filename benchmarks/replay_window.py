"""Windowed replay: how far a window of k tokens moves each token's increment, and what it does
to learning.

``BPLambda(..., synth_update="replay", replay_window=k)`` sums each token's increment over its
last k states only, dropping the (gamma lambda)^k J^k tail of the eligibility trace. Two tasks:

- toy: ``bpl/LineDraw-v0`` with T = 20 tokens, the paper's toy set-up (frozen linear RNN, H = 30,
  batch 10, lambda = gamma = 1, only the synthesiser learns, lr 1e-4);
- copy-repeat: ``bpl/CopyRepeat-v0`` with N = 4 bits vectors repeated R = 5 times (T = 27), LSTM
  H = 32, batch 32, lambda = 1, gamma = 0.9, beta = 1, Adam 1e-2 (core, readout) and 1e-3
  (synthesiser), as the quick copy-repeat preset.

Part 1, increment error: a learner first learns ``--pretrain`` batches with the exact replay (the
trace path's numbers), so that g is far from its zero start; then, on ``--batches`` further
batches with its parameters fixed, every token's increment sum_b delta_u . e_u is computed by the
trace path (the reference) and by replay with each window k (recorded before clipping), and by
the exact replay (k = None: float32 rounding only). Reported: the relative error
sqrt(sum |inc_k - inc|^2 / sum |inc|^2) over all tokens and parameter tensors, its median over
the tokens, and the relative error of the summed update of each batch of sequences.

Part 2, learning: from the same initial parameters, ``--updates`` batches with each window (and
the exact replay, k = None): the toy task's mean alignment cos(g(s_t), G_t)
(``agents.analysis.alignment``), and copy-repeat's loss in bits per output bit over the last 10%
of the batches. Usage::

    python benchmarks/replay_window.py [--windows 1 5 10 20 50] [--pretrain 300] [--batches 3]
                                       [--updates 1000 300] [--seed 0] [--threads 1]
                                       [--out benchmarks/results/replay_window.json]
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from common import describe, machine_info, write_report
from stable_baselines3.common.callbacks import BaseCallback

import bpl_envs  # noqa: F401  (registers the bpl/ ids)
from agents.analysis import alignment
from agents.bp_lambda import BPLambda

TASKS = {
    "toy": {
        "env": ("bpl/LineDraw-v0", {"sequence_length": 20}),
        "num_envs": 10,
        "learner": dict(
            core="rnn",
            activation="identity",
            hidden_size=30,
            lam=1.0,
            gamma=1.0,
            sg_weight=1.0,
            lr_core=0.0,
            lr_readout=0.0,
            lr_synth=1e-4,
        ),
    },
    "copy-repeat": {
        "env": ("bpl/CopyRepeat-v0", {"pattern_length": 4, "repeats": 5}),
        "num_envs": 32,
        "learner": dict(
            core="lstm",
            hidden_size=32,
            lam=1.0,
            gamma=0.9,
            sg_weight=1.0,
            lr_core=1e-2,
            lr_readout=1e-2,
            lr_synth=1e-3,
        ),
    },
}


def make_env(task: str):
    env_id, kwargs = TASKS[task]["env"]
    return gym.make_vec(env_id, num_envs=TASKS[task]["num_envs"], **kwargs)


def make_learner(task: str, seed: int, **kwargs) -> BPLambda:
    return BPLambda(make_env(task), seed=seed, **{**TASKS[task]["learner"], **kwargs})


def record_increments(learner: BPLambda) -> list[list[torch.Tensor]]:
    """Instrument ``learner`` to record every token's increment sum_b delta . e (before
    clipping), in token order, whichever path computes it."""
    recorded: list[list[torch.Tensor]] = []
    apply_one, apply_many = learner._apply_synth_increments, learner._apply_replayed_increments

    def one(increments):
        recorded.append([i.clone() for i in increments])
        apply_one(increments)

    def many(first_state, increments):
        per_state = [increment.clone().unbind(0) for increment in increments]
        recorded.extend(list(token) for token in zip(*per_state, strict=True))
        apply_many(first_state, increments)

    learner._apply_synth_increments, learner._apply_replayed_increments = one, many
    return recorded


def frozen_copy(learner: BPLambda, task: str, synth_update: str, window: int | None):
    """A copy of ``learner`` (parameters, optimiser state, env position, through a checkpoint) on
    another path, whose optimisers have learning rate 0: it computes its increments, but its
    parameters stay fixed."""
    checkpoint = io.BytesIO()
    learner.save(checkpoint)
    checkpoint.seek(0)
    twin = BPLambda.load(
        checkpoint, env=make_env(task), synth_update=synth_update, replay_window=window
    )
    for optimizer in twin._optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = 0.0
    return twin


def relative_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    difference = sum(float((g - w).square().sum()) for g, w in zip(got, want, strict=True))
    return (difference / sum(float(w.square().sum()) for w in want)) ** 0.5


def summed(tokens: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [sum(parts) for parts in zip(*tokens, strict=True)]


def increment_errors(task: str, windows: list[int], pretrain: int, batches: int, seed: int):
    """Part 1: relative error of every token's increment, and of each batch's summed update."""
    learner = make_learner(task, seed, synth_update="replay").learn(episodes=pretrain)
    reference = frozen_copy(learner, task, "trace", None)
    want = record_increments(reference)
    reference.learn(episodes=batches)
    tokens = len(want) // batches
    results = {}
    for window in [*windows, None]:  # (None: the exact replay, float rounding only)
        twin = frozen_copy(learner, task, "replay", window)
        got = record_increments(twin)
        twin.learn(episodes=batches)
        per_token = [relative_error(g, w) for g, w in zip(got, want, strict=True)]
        batch_sums = [
            relative_error(
                summed(got[b * tokens : (b + 1) * tokens]),
                summed(want[b * tokens : (b + 1) * tokens]),
            )
            for b in range(batches)
        ]
        results[window] = {
            "relative_error": relative_error(
                [i for t in got for i in t], [i for t in want for i in t]
            ),
            "median_token_relative_error": float(np.median(per_token)),
            "summed_update_relative_error": float(np.mean(batch_sums)),
        }
    return results


class LossLog(BaseCallback):
    """The loss in bits per output bit of every batch (copy-repeat)."""

    def __init__(self) -> None:
        super().__init__()
        self.bits: list[float] = []

    def _on_rollout_end(self) -> None:
        value = self.model.logger.name_to_value.get("train/loss_bits")
        if value is not None:
            self.bits.append(float(value))

    def _on_step(self) -> bool:
        return True


def learning(task: str, windows: list[int | None], updates: int, seed: int) -> dict:
    """Part 2: the task score each window reaches after ``updates`` batches."""
    results = {}
    for window in windows:
        learner = make_learner(task, seed, synth_update="replay", replay_window=window)
        log = LossLog()
        learner.learn(episodes=updates, callback=log, log_interval=0)
        if task == "toy":
            env_id, kwargs = TASKS[task]["env"]
            score = alignment(
                learner, gym.make_vec(env_id, num_envs=10, **kwargs), n_sequences=100, seed=seed + 1
            )
            results[window] = {"mean_alignment": float(np.mean(score))}
        else:
            tail = log.bits[-max(1, updates // 10) :]
            results[window] = {"final_loss_bits": float(np.mean(tail))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", nargs="+", type=int, default=[1, 5, 10, 20, 50])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--pretrain", type=int, default=300)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument(
        "--updates", nargs=2, type=int, default=[1000, 300], metavar=("TOY", "COPY_REPEAT")
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/replay_window.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(describe(info))
    report = {"machine": info, "arguments": {k: str(v) for k, v in vars(args).items()}}
    for task in args.tasks:
        errors = increment_errors(task, args.windows, args.pretrain, args.batches, args.seed)
        updates = args.updates[list(TASKS).index(task)]
        scores = learning(task, [*args.windows, None], updates, args.seed)
        report[task] = {
            "increment_errors": {str(k): v for k, v in errors.items()},
            "learning": {str(k): v for k, v in scores.items()},
        }
        print(f"\n{task}: {TASKS[task]['env']}, {updates} updates")
        print(
            f"  {'window':>6} {'increment error':>16} {'median per token':>17} "
            f"{'summed update':>14} {'score':>10}"
        )
        for window in [*args.windows, None]:
            error = errors[window]
            score = next(iter(scores[window].values()))
            print(
                f"  {str(window):>6} {error['relative_error']:>16.3g} "
                f"{error['median_token_relative_error']:>17.3g} "
                f"{error['summed_update_relative_error']:>14.3g} {score:>10.4f}",
                flush=True,
            )
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_report(args.out, report)


if __name__ == "__main__":
    main()
