"""examples/clip_fraction.py: the clip fractions it reports on the replay path are those of the
trace path (the reference rule, clipped per token) continued from the same checkpoint."""

import pathlib
import runpy

import numpy as np

from agents.cli import main

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "clip_fraction.py"


def test_replay_clip_fractions_are_the_trace_paths(tmp_path, capsys):
    run = tmp_path / "run"
    # a large synthesiser learning rate, so that some per-token increments exceed norm 1
    argv = ["train", "bpl/LineDraw-v0", "--num-envs", "3", "--hidden-size", "4", "--updates", "5"]
    argv += ["--lr-synth", "0.3", "--lam", "1", "--dtype", "float64", "--out", str(run)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()

    example = runpy.run_path(str(EXAMPLE))
    replayed = example["clip_fractions"](run, 6)
    traced = example["clip_fractions"](run, 6, synth_update="trace")
    assert len(replayed) == 6
    assert replayed.max() > 0  # the check below compares clipping that happened
    np.testing.assert_array_equal(replayed, traced)
