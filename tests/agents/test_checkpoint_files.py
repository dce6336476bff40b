"""Saving and loading learners: atomic saves, and one clear error per kind of bad file."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest
import torch

import bpl_envs  # noqa: F401
from agents.base import CheckpointError
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT


@pytest.fixture
def saved(tmp_path):
    learner = BPLambda("bpl/LineDraw-v0", n_envs=2, hidden_size=3, seed=0)
    learner.learn(episodes=1)
    path = tmp_path / "learner.pt"
    learner.save(path)
    return learner, path


def test_truncated_empty_and_foreign_files_name_the_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 2], "truncated, corrupted or not a checkpoint"),
        "empty.pt": (b"", "is empty"),
        "text.pt": (b"hello, this is a text file\n", "truncated, corrupted or not a checkpoint"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as info:
            BPLambda.load(bad)
        assert name in str(info.value)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    marker = tmp_path / "executed"
    torch.save({"payload": _Exploit(str(marker))}, bad)  # a pickle with a custom class
    with pytest.raises(CheckpointError, match="evil.pt"):
        BPLambda.load(bad)
    assert not marker.exists()


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_other_dicts_classes_and_formats_are_named(saved, tmp_path):
    _, path = saved
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a bp-lambda learner checkpoint"):
        BPLambda.load(plain)
    with pytest.raises(CheckpointError, match="'BPLambda' checkpoint, not a BPTT one"):
        BPTT.load(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["format"] = 99
    future = tmp_path / "future.pt"
    torch.save(checkpoint, future)
    with pytest.raises(CheckpointError, match="format 99"):
        BPLambda.load(future)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        BPLambda.load(tmp_path / "missing.pt")


def test_loading_into_an_env_of_another_shape_names_the_sizes(saved):
    _, path = saved
    sizes = r"input_size 10 \(checkpoint\) vs 8 \(env\); output_size 2 \(checkpoint\) vs 10"
    with pytest.raises(ValueError, match=sizes):
        BPLambda.load(path, env=gym.make_vec("bpl/SequentialDigits-v0", num_envs=2))
    with pytest.raises(ValueError, match="set_env"):
        BPLambda.load(path, env=gym.make_vec("bpl/LineDraw-v0", num_envs=3))
    learner = BPLambda.load(path)
    learner.set_env(gym.make_vec("bpl/LineDraw-v0", num_envs=3))  # the documented way
    learner.learn(episodes=1)


def test_an_interrupted_save_keeps_the_previous_checkpoint(saved):
    """A process killed while save() writes leaves the earlier checkpoint loadable."""
    learner, path = saved
    expected = {k: v.clone() for k, v in learner.core.state_dict().items()}
    script = textwrap.dedent(f"""
        import os, signal, torch
        from agents.bp_lambda import BPLambda
        learner = BPLambda.load({str(path)!r})
        original = torch.serialization._open_zipfile_writer
        def die_mid_write(*args, **kwargs):
            writer = original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # killed after the file was opened
            return writer
        torch.serialization._open_zipfile_writer = die_mid_write
        for parameter in learner.core.parameters():
            parameter.data.add_(1.0)
        learner.save({str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()
    reloaded = BPLambda.load(path)
    for key, value in reloaded.core.state_dict().items():
        assert torch.equal(value, expected[key])
