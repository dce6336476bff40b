"""How often the reference code's per-token clipping of the synthesiser increment fires.

The paper's code rescales every token's synthesiser increment to norm <= 1 per tensor. The
forward view (what the paper-size presets run) cannot clip per token; where clipping never fires
it gives the same numbers as the clipped online rule. This script continues a BP(λ) run from its
checkpoint on the replay path with clipping on (the trace path's per-token increments, clipped as
the reference code does) for a few updates and reports ``train/synth_clip_fraction``: the
fraction of (token, tensor) increments that the clipping rescaled.

    python examples/clip_fraction.py RUN_FOLDER [RUN_FOLDER ...] --updates 20

RUN_FOLDER is a ``bpl train`` / ``bpl reproduce`` cell folder of BP(λ) (run.json, checkpoint.pt).
Nothing is written there: the continued learner lives in memory only.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
import torch
from stable_baselines3.common.logger import configure

from agents.experiments.building import build_env
from agents.experiments.run_config import learner_class
from agents.experiments.run_logs import read_progress
from agents.experiments.training import load_run


def clip_fractions(folder: pathlib.Path, updates: int, synth_update: str = "replay") -> np.ndarray:
    """``train/synth_clip_fraction`` of each of ``updates`` batches continued from ``folder`` on
    ``synth_update``'s path with per-token clipping (the replay by default: the trace path gives
    the same increments, far slower at the paper's sizes)."""
    config, _ = load_run(folder)
    if config.learner != "bp_lambda":
        raise ValueError(f"{folder} is a {config.learner!r} run; clipping is BP(lambda)'s")
    env = build_env(config.env, config.env_kwargs, config.num_envs, vector=True)
    learner = learner_class(config.learner).load(
        folder / "checkpoint.pt", env=env, synth_update=synth_update, clip_synth_update=True
    )
    with tempfile.TemporaryDirectory() as logs:
        learner.set_logger(configure(logs, ["csv"]))
        learner.learn(episodes=updates, reset_num_timesteps=False)
        return read_progress(pathlib.Path(logs) / "progress.csv")["train/synth_clip_fraction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="BP(lambda) run folders")
    parser.add_argument("--updates", type=int, default=20, help="batches to continue (20)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.runs:
        fractions = clip_fractions(folder, args.updates)
        config, run = load_run(folder)
        done = run["num_episodes"]  # batches of sequences (one update each)
        print(
            f"{folder}: after {done} updates, clip fraction over "
            f"{len(fractions)} batches: mean {fractions.mean():.4f}, max {fractions.max():.4f}, "
            f"batches with any clipping {int((fractions > 0).sum())}"
        )


if __name__ == "__main__":
    main()
