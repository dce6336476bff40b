"""Learner throughput (tokens/s) and peak memory: BP(lambda) against BPTT and the other baselines.

Three configurations (see ``common.CONFIGS``): (a) tanh RNN H=30, B=10, T=20; (b) LSTM H=30,
B=50, T=28; (c) LSTM H=100, B=100, T=20, each streaming random sequences of the task's shape from
a replay env. Learners: BP(lambda) on its online trace path (the default), on its replay path
(``synth_update="replay"``: the whole sequence so far, and windows of 5 and 10 tokens) and on its
offline-equivalent fast path (``synth_update="forward_view"``), BPTT, truncated BPTT (n=5), DNI
(n=5), RTRL, the online approximations of RTRL (UORO, SnAp-1, e-prop), and a plain PyTorch
BPTT loop (``torch.nn.RNN``/``LSTM`` unrolled over the same env stream, one backward and Adam
step per batch of sequences).

Every (configuration, learner) runs in a fresh Python process, so its peak RSS
(``getrusage`` maxrss) is its own; the process first imports and builds everything, and that
baseline is reported too. Tokens/s counts one token per sequence per step (B per step): whole
batches of sequences for at least ``--seconds`` (best of ``--repeats`` alternated runs), except
where a learner is too slow for that (BP(lambda)'s trace path and RTRL on (c)): their rate is
the steady state measured over tokens 3..``--partial-tokens`` of one sequence (the first two
tokens of a sequence do no trace decay). Ratios are computed from the rates of the same run.

``--cores analytic functional`` also runs each learner (but the plain loop) on the same torch
cell wrapped in ``agents.cores.FunctionalCore`` (``torch.nn.RNNCell``, or ``torch.nn.LSTMCell``
on the joint state [h, c]), whose derivatives come from ``torch.func``: the cost of generality.
Usage::

    python benchmarks/learners.py [--configs a b c] [--seconds 3] [--repeats 2] [--threads N]
                                  [--cores analytic functional]
                                  [--out benchmarks/results/learners.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    CONFIGS,
    Config,
    config_dict,
    describe,
    machine_info,
    peak_rss_bytes,
    replay_env,
    run_child,
    write_report,
)
from stable_baselines3.common.callbacks import BaseCallback

SCRIPT = Path(__file__).resolve()
REPLAY_WINDOWS = (5, 10)
LEARNER_NAMES = (
    "bp_lambda_trace",
    "bp_lambda_replay",
    *(f"bp_lambda_replay_window_{k}" for k in REPLAY_WINDOWS),
    "bp_lambda_forward_view",
    "bptt",
    "tbptt_5",
    "dni_5",
    "rtrl",
    "uoro",
    "snap1",
    "eprop",
    "plain_bptt",
)
PARTIAL = {("c", "bp_lambda_trace"), ("c", "rtrl")}  # a few tokens, not whole sequences
CORE_IMPLEMENTATIONS = ("analytic", "functional")


class JointLSTMCell(torch.nn.Module):
    """torch.nn.LSTMCell on one joint state tensor [h, c], as FunctionalCore needs."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTMCell(input_size, hidden_size)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h, c = self.lstm(x, s.chunk(2, dim=1))
        return torch.cat((h, c), dim=1)


def build_core(config: Config, implementation: str):
    """The configuration's core by name ("analytic"), or the same torch cell in a
    FunctionalCore ("functional")."""
    if implementation == "analytic":
        return config.core
    from agents.cores import FunctionalCore

    torch.manual_seed(0)
    if config.core == "lstm":
        cell = JointLSTMCell(config.input_size, config.hidden_size)
        return FunctionalCore(
            cell,
            input_size=config.input_size,
            state_size=2 * config.hidden_size,
            hidden_size=config.hidden_size,
        )
    return FunctionalCore(torch.nn.RNNCell(config.input_size, config.hidden_size))


def build_learner(name: str, config: Config, env, implementation: str = "analytic"):
    """The learner ``name`` with its library defaults (lambda = 1, gamma = 0.9 for BP(lambda))."""
    from agents.bp_lambda import BPLambda
    from agents.bptt import BPTT, DNI, TruncatedBPTT
    from agents.eprop import EProp
    from agents.rtrl import RTRL
    from agents.snap import SnAp1
    from agents.uoro import UORO

    common = dict(core=build_core(config, implementation), hidden_size=config.hidden_size, seed=0)
    if name == "bp_lambda_trace":
        return BPLambda(env, lam=1.0, gamma=0.9, **common)
    if name == "bp_lambda_replay":
        return BPLambda(env, lam=1.0, gamma=0.9, synth_update="replay", **common)
    if name.startswith("bp_lambda_replay_window_"):
        window = int(name.rsplit("_", 1)[1])
        return BPLambda(
            env, lam=1.0, gamma=0.9, synth_update="replay", replay_window=window, **common
        )
    if name == "bp_lambda_forward_view":
        return BPLambda(
            env, lam=1.0, gamma=0.9, synth_update="forward_view", clip_synth_update=False, **common
        )
    if name == "bptt":
        return BPTT(env, **common)
    if name == "tbptt_5":
        return TruncatedBPTT(env, n=5, **common)
    if name == "dni_5":
        return DNI(env, n=5, **common)
    if name == "rtrl":
        return RTRL(env, **common)
    online = {"uoro": UORO, "snap1": SnAp1, "eprop": EProp}
    if name in online:
        return online[name](env, **common)
    raise ValueError(f"unknown learner {name!r}")


class StepTimes(BaseCallback):
    """Records the time after every env step; stops after ``limit`` steps when given."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit, self.times = limit, []

    def _on_step(self) -> bool:
        self.times.append(time.perf_counter())
        return self.limit is None or len(self.times) < self.limit


class PlainBPTT:
    """torch.nn.RNN/LSTM unrolled over a batch of sequences read from the same env stream (the
    env is stepped with zero predictions; the targets come from its ``info``), then one backward
    pass of the batch-mean loss and one Adam step."""

    def __init__(self, config: Config, env) -> None:
        from bpl_envs.losses import get_loss

        torch.manual_seed(0)
        layer = torch.nn.LSTM if config.core == "lstm" else torch.nn.RNN
        self.layer = layer(config.input_size, config.hidden_size)
        self.readout = torch.nn.Linear(config.hidden_size, config.output_size)
        parameters = [*self.layer.parameters(), *self.readout.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
        self.loss, self.env, self.batch = get_loss(config.loss), env, config.batch_size
        self.zeros = np.zeros(env.action_space.shape, np.float32)

    def learn_one_batch(self) -> int:
        obs, _ = self.env.reset()
        inputs, targets, scored, done = [], [], [], False
        while not done:
            inputs.append(obs)
            obs, _, terminated, _, info = self.env.step(self.zeros)
            targets.append(info["target"])
            scored.append(info["scored"])
            done = bool(terminated.all())
        x = torch.as_tensor(np.stack(inputs))
        out, _ = self.layer(x)
        losses = self.loss.value(self.readout(out), torch.as_tensor(np.stack(targets)))
        total = (losses * torch.as_tensor(np.stack(scored), dtype=losses.dtype)).sum() / self.batch
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        return len(inputs) * self.batch


def trace_bytes(learner, config: Config) -> int:
    """Bytes of BP(lambda)'s eligibility traces (float32)."""
    shapes = learner.synthesiser.trace_shapes(config.batch_size)
    return sum(math.prod(shape) for shape in shapes) * 4


def child(spec: dict) -> dict:
    """One (configuration, learner) measurement in this fresh process."""
    config = CONFIGS[spec["config"]]
    name, seconds, partial_tokens = spec["learner"], spec["seconds"], spec["partial_tokens"]
    env = replay_env(config)
    implementation = spec["core"]
    learner = (
        PlainBPTT(config, env)
        if name == "plain_bptt"
        else build_learner(name, config, env, implementation)
    )
    baseline_rss = peak_rss_bytes()
    if spec["partial"]:
        timer = StepTimes(limit=partial_tokens)
        learner.learn(episodes=1, callback=timer)
        steps = len(timer.times) - 3  # tokens 3.. (the first two do no trace decay)
        rate = steps * config.batch_size / (timer.times[-1] - timer.times[2])
        tokens = steps * config.batch_size
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
        "config": config.name,
        "learner": name,
        "core": implementation,
        "tokens_per_s": rate,
        "tokens_timed": tokens,
        "whole_sequences": not spec["partial"],
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_after_setup_bytes": baseline_rss,
        "trace_bytes": trace_bytes(learner, config) if name == "bp_lambda_trace" else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--learners", nargs="+", default=list(LEARNER_NAMES), choices=list(LEARNER_NAMES)
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per learner and run")
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs; best is kept")
    parser.add_argument(
        "--partial-tokens",
        type=int,
        default=6,
        help="tokens run by the learners too slow for whole sequences on (c)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--cores",
        nargs="+",
        default=["analytic"],
        choices=CORE_IMPLEMENTATIONS,
        help="core implementations to run every learner on",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learners.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    info = machine_info()
    print(describe(info))
    rows = []
    for name in args.configs:
        config = CONFIGS[name]
        print(f"\n({name}) {config.description}", flush=True)
        best: dict[str, dict] = {}
        runs = [
            (learner, core)
            for learner in args.learners
            for core in args.cores
            if learner != "plain_bptt" or core == "analytic"
        ]
        for _ in range(args.repeats):  # alternate learners, keep each one's best run
            for learner, core in runs:
                spec = {
                    "config": name,
                    "learner": learner,
                    "core": core,
                    "seconds": args.seconds,
                    "partial": (name, learner) in PARTIAL,
                    "partial_tokens": args.partial_tokens,
                }
                result = run_child(SCRIPT, spec, args.threads)
                key = label(learner, core)
                if key not in best or result["tokens_per_s"] > best[key]["tokens_per_s"]:
                    best[key] = result
        rows.extend(best.values())
        print_config_table(best)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "machine": info,
        "configs": {n: config_dict(CONFIGS[n]) for n in args.configs},
        "results": rows,
        "ratios": ratios(rows),
    }
    print_ratios(report["ratios"])
    write_report(args.out, report)


def label(learner: str, core: str) -> str:
    """A learner's name in tables and ratios: ``bptt``, or ``bptt+functional``."""
    return learner if core == "analytic" else f"{learner}+{core}"


def print_config_table(best: dict[str, dict]) -> None:
    print(f"  {'learner':<24} {'tokens/s':>11} {'peak RSS MB':>12} {'after setup MB':>15}")
    for name, row in best.items():
        note = "" if row["whole_sequences"] else "  (steady state over a few tokens)"
        print(
            f"  {name:<24} {row['tokens_per_s']:>11,.1f} {row['peak_rss_bytes'] / 1e6:>12,.0f} "
            f"{row['rss_after_setup_bytes'] / 1e6:>15,.0f}{note}",
            flush=True,
        )
        if row["trace_bytes"]:
            growth = row["peak_rss_bytes"] - row["rss_after_setup_bytes"]
            print(
                f"  {'':<24} traces {row['trace_bytes'] / 1e6:,.1f} MB; peak RSS "
                f"{row['peak_rss_bytes'] / row['trace_bytes']:.2f} x the traces, growth over "
                f"setup {growth / row['trace_bytes']:.2f} x"
            )


def ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per configuration: BP(lambda)'s trace and replay paths against BPTT (learner and plain
    loop), the replay and fast paths against the trace path (tokens/s, and peak RSS for replay),
    the online approximations of RTRL against RTRL, the trace path against them, and each
    learner on the functional core against the same learner on the analytic core."""
    out: dict[str, dict[str, float]] = {}
    for config in sorted({row["config"] for row in rows}):
        in_config = [row for row in rows if row["config"] == config]
        rate = {label(row["learner"], row["core"]): row["tokens_per_s"] for row in in_config}
        rss = {label(row["learner"], row["core"]): row["peak_rss_bytes"] for row in in_config}
        pairs = {
            "trace_over_bptt": ("bp_lambda_trace", "bptt"),
            "trace_over_plain_bptt": ("bp_lambda_trace", "plain_bptt"),
            "replay_over_plain_bptt": ("bp_lambda_replay", "plain_bptt"),
            "replay_over_trace": ("bp_lambda_replay", "bp_lambda_trace"),
            "forward_view_over_trace": ("bp_lambda_forward_view", "bp_lambda_trace"),
            "bptt_over_plain_bptt": ("bptt", "plain_bptt"),
            **{f"{name}_over_rtrl": (name, "rtrl") for name in ("uoro", "snap1", "eprop")},
            **{
                f"trace_over_{name}": ("bp_lambda_trace", name)
                for name in ("uoro", "snap1", "eprop")
            },
        }
        pairs.update(
            {
                f"functional_over_analytic[{learner}]": (f"{learner}+functional", learner)
                for learner in LEARNER_NAMES
            }
        )
        out[config] = {
            key: rate[a] / rate[b] for key, (a, b) in pairs.items() if a in rate and b in rate
        }
        if "bp_lambda_replay" in rss and "bp_lambda_trace" in rss:
            out[config]["replay_rss_over_trace_rss"] = (
                rss["bp_lambda_replay"] / rss["bp_lambda_trace"]
            )
    return out


def print_ratios(table: dict[str, dict[str, float]]) -> None:
    print("\nratios (same run)")
    for config, values in table.items():
        text = ", ".join(
            f"{key} = {value:,.3g}" for key, value in values.items() if math.isfinite(value)
        )
        print(f"  ({config}) {text}")


if __name__ == "__main__":
    main()
