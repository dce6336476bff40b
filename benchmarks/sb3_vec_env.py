"""Tokens per second of SB3's VecEnv over the native vector envs against SB3's DummyVecEnv.

``NativeVecEnv(gym.make_vec(id, num_envs=B))`` (bpl_envs.sb3) and ``DummyVecEnv`` of B single
envs, as ``stable_baselines3.common.env_util.make_vec_env`` builds it, are stepped through SB3's
``VecEnv`` API with the same pre-drawn actions (random logits): each step returns SB3's
observations, rewards, dones and one info dict per sub-env, and finished sub-envs are reset
within the step. The two alternate ``--repeats`` times and the best rate of each is kept, so
the ratio compares the two under the same machine load. Usage::

    python benchmarks/sb3_vec_env.py [--num-envs 64] [--seconds 2] [--repeats 3]
                                     [--out benchmarks/results/sb3_vec_env.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import describe, machine_info, write_report
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.sb3 import NativeVecEnv

ENV_IDS = ("bpl/CopyRepeat-v0", "bpl/SequentialDigits-v0")
REQUIRED_SPEEDUP = 10.0


def tokens_per_second(vec_env: VecEnv, actions: np.ndarray, seconds: float) -> float:
    """Step ``vec_env`` with ``actions[k % len(actions)]`` for about ``seconds``; tokens/s
    (``num_envs`` tokens per step)."""
    vec_env.seed(0)
    vec_env.reset()
    for k in range(20):  # warm-up
        vec_env.step(actions[k % len(actions)])
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            vec_env.step(actions[steps % len(actions)])
            steps += 1
    return steps * vec_env.num_envs / elapsed


def measure(env_id: str, num_envs: int, seconds: float, repeats: int) -> dict[str, float | str]:
    native = NativeVecEnv(gym.make_vec(env_id, num_envs=num_envs))
    dummy = DummyVecEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(1000, num_envs, *native.action_space.shape)).astype(np.float32)
    native_rates, dummy_rates = [], []
    for _ in range(repeats):
        native_rates.append(tokens_per_second(native, actions, seconds))
        dummy_rates.append(tokens_per_second(dummy, actions, seconds))
    return {
        "env_id": env_id,
        "num_envs": num_envs,
        "native_tokens_per_s": max(native_rates),
        "dummy_tokens_per_s": max(dummy_rates),
        "speedup": max(native_rates) / max(dummy_rates),
        "native_runs": native_rates,
        "dummy_runs": dummy_rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sb3_vec_env.json"))
    args = parser.parse_args()

    before = machine_info()
    print(describe(before))
    results = [measure(env_id, args.num_envs, args.seconds, args.repeats) for env_id in ENV_IDS]
    print(f"\n{'env':<26} {'NativeVecEnv tok/s':>19} {'DummyVecEnv tok/s':>18} {'speedup':>8}")
    for row in results:
        print(
            f"{row['env_id']:<26} {row['native_tokens_per_s']:>19,.0f} "
            f"{row['dummy_tokens_per_s']:>18,.0f} {row['speedup']:>7.1f}x"
        )
    after = machine_info()["load_average_1_5_15min"]
    print(f"load average after: {after}")
    report = {
        "machine": before,
        "load_average_after": after,
        "required_speedup": REQUIRED_SPEEDUP,
        "results": results,
    }
    write_report(args.out, report)
    slow = [row["env_id"] for row in results if row["speedup"] < REQUIRED_SPEEDUP]
    if slow:
        raise SystemExit(f"speedup below {REQUIRED_SPEEDUP}x for {slow}")


if __name__ == "__main__":
    main()
