"""examples/clip_fraction.py: the clip fractions it reports on the replay path are those of the
trace path (the reference rule, clipped per token) continued from the same checkpoint."""

import pathlib
import runpy
import tempfile

import numpy as np
from stable_baselines3.common.logger import configure

from agents import BPLambda
from agents.cli import main
from agents.experiments.building import build_env
from agents.experiments.run_logs import read_progress
from agents.experiments.training import load_run

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "clip_fraction.py"


def trace_path_fractions(folder: pathlib.Path, updates: int) -> np.ndarray:
    """The per-batch clip fractions of the trace path continued from ``folder``'s checkpoint."""
    config, _ = load_run(folder)
    env = build_env(config.env, config.env_kwargs, config.num_envs, vector=True)
    learner = BPLambda.load(
        folder / "checkpoint.pt", env=env, synth_update="trace", clip_synth_update=True
    )
    with tempfile.TemporaryDirectory() as logs:
        learner.set_logger(configure(logs, ["csv"]))
        learner.learn(episodes=updates, reset_num_timesteps=False)
        return read_progress(pathlib.Path(logs) / "progress.csv")["train/synth_clip_fraction"]


def test_replay_clip_fractions_are_the_trace_paths(tmp_path, capsys):
    run = tmp_path / "run"
    # a large synthesiser learning rate, so that some per-token increments exceed norm 1
    argv = ["train", "bpl/LineDraw-v0", "--num-envs", "3", "--hidden-size", "4", "--updates", "5"]
    argv += ["--lr-synth", "0.3", "--lam", "1", "--dtype", "float64", "--out", str(run)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()

    example = runpy.run_path(str(EXAMPLE))
    replayed = example["clip_fractions"](run, 6)
    traced = trace_path_fractions(run, 6)
    assert len(replayed) == 6
    assert replayed.max() > 0  # the check below compares clipping that happened
    np.testing.assert_array_equal(replayed, traced)
