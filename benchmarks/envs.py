"""Tokens per second of the native vector envs versus Gymnasium's SyncVectorEnv of single envs.

Both are driven in one run with the same pre-drawn actions (random logits), in the default
NEXT_STEP autoreset mode, and the ratio is reported. Usage::

    python benchmarks/envs.py [--num-envs 64] [--seconds 2.0] [--out benchmarks/results/envs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv

import bpl_envs  # noqa: F401  (registers the ids)

ENV_IDS = (
    "bpl/CopyRepeat-v0",
    "bpl/SequentialDigits-v0",
    "bpl/AddingProblem-v0",
    "bpl/CharLM-v0",
    "bpl/MackeyGlass-v0",
)
REQUIRED_SPEEDUP = 20.0


def tokens_per_second(vec_env: gym.vector.VectorEnv, actions: np.ndarray, seconds: float) -> float:
    """Step ``vec_env`` with ``actions[k % len(actions)]`` for about ``seconds``; tokens/s.

    A token is one sub-env step, so each ``step`` call counts ``num_envs`` tokens.
    """
    vec_env.reset(seed=0)
    for k in range(20):  # warm-up
        vec_env.step(actions[k % len(actions)])
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            vec_env.step(actions[steps % len(actions)])
            steps += 1
    return steps * vec_env.num_envs / elapsed


def measure(env_id: str, num_envs: int, seconds: float) -> dict[str, float | str]:
    native = gym.make_vec(env_id, num_envs=num_envs)
    sync = SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(1000, *native.action_space.shape)).astype(np.float32)
    native_rate = tokens_per_second(native, actions, seconds)
    sync_rate = tokens_per_second(sync, actions, seconds)
    return {
        "env_id": env_id,
        "num_envs": num_envs,
        "native_tokens_per_s": native_rate,
        "sync_tokens_per_s": sync_rate,
        "speedup": native_rate / sync_rate,
    }


def machine() -> dict[str, str | int | None]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per env and kind")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/envs.json"))
    args = parser.parse_args()

    info = machine()
    print(" ".join(f"{key}={value}" for key, value in info.items()))
    results = [measure(env_id, args.num_envs, args.seconds) for env_id in ENV_IDS]
    print(f"\n{'env':<26} {'native tok/s':>14} {'sync tok/s':>12} {'speedup':>8}")
    for row in results:
        print(
            f"{row['env_id']:<26} {row['native_tokens_per_s']:>14,.0f} "
            f"{row['sync_tokens_per_s']:>12,.0f} {row['speedup']:>7.1f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "required_speedup": REQUIRED_SPEEDUP, "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    slow = [row["env_id"] for row in results if row["speedup"] < REQUIRED_SPEEDUP]
    if slow:
        raise SystemExit(f"speedup below {REQUIRED_SPEEDUP}x for {slow}")


if __name__ == "__main__":
    main()
