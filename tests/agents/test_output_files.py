"""Files and devices at the door of ``bpl train`` / ``bpl reproduce``: a device the machine
lacks, an output folder that cannot be written, paths with spaces and non-ASCII characters, a
results file killed mid-write, and a damaged checkpoint given to ``--resume``.

Each failure must be a usage error (exit status 2, our message, no traceback) raised before any
learning is done and without deleting anything.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from agents import base as base_module
from agents.cli import main
from agents.experiments import output_folder
from agents.experiments.output_folder import OutputNotWritableError, prepare_output_dir

RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tiny_train(out, *extra) -> list[str]:
    """A BP(λ) run on LineDraw small enough for a unit test (2 batches of 2 sequences, H = 2)."""
    return [
        "train",
        "bpl/LineDraw-v0",
        "--num-envs",
        "2",
        "--hidden-size",
        "2",
        "--updates",
        "2",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def usage_error(capsys, argv) -> str:
    """Run main(argv), expecting a usage error (exit status 2, no traceback); return stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_learning(monkeypatch):
    """Fail the test if any learner starts learning (nothing may be computed)."""

    def learn(*_args, **_kwargs):
        raise AssertionError("learning started although the command had to stop first")

    monkeypatch.setattr(base_module.BaseLearner, "learn", learn)


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.usefixtures("no_learning")
def test_cuda_on_a_machine_without_cuda_is_a_usage_error_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "run"
    err = usage_error(capsys, tiny_train(out, "--device", "cuda"))
    assert "device='cuda': CUDA is not available on this machine" in err
    assert not out.exists()


# --------------------------------------------------------------------------- output folders
@pytest.mark.skipif(
    RUNNING_AS_ROOT,
    reason="running as root: chmod does not stop root from writing (the check is tested with "
    "a mocked os.access below)",
)
@pytest.mark.usefixtures("no_learning")
def test_a_read_only_out_is_refused_before_anything_runs(tmp_path, capsys):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        err = usage_error(capsys, tiny_train(parent / "run"))
    finally:
        parent.chmod(0o755)
    assert "is not writable (permission denied)" in err
    assert not (parent / "run").exists()


@pytest.mark.usefixtures("no_learning")
def test_an_unwritable_out_is_refused_before_anything_runs_or_is_deleted(
    tmp_path, capsys, monkeypatch
):
    """os.access says the folder is read-only (as it does for a chmod 555 folder when the
    tests do not run as root): nothing is computed, created or deleted."""
    earlier = tmp_path / "earlier"
    prepare_output_dir(earlier, force=False)
    output_folder.atomic_write(earlier / "results.json", lambda f: f.write(b"{}"))
    before = snapshot(earlier)
    real_access = os.access
    monkeypatch.setattr(
        output_folder.os,
        "access",
        lambda path, mode: False if pathlib.Path(path) == earlier else real_access(path, mode),
    )
    err = usage_error(capsys, tiny_train(earlier, "--force"))
    assert f"--out {earlier}: it is not writable (permission denied)" in err
    assert snapshot(earlier) == before  # --force deleted nothing
    err = usage_error(capsys, tiny_train(earlier / "new" / "run"))
    assert f"its parent {earlier} is not writable" in err
    assert not (earlier / "new").exists()


def test_an_error_creating_the_folder_is_our_message_not_a_traceback(tmp_path, monkeypatch):
    """What os.access cannot see (a read-only file system, root on a read-only mount)."""

    def read_only_mkdir(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only_mkdir)
    with pytest.raises(OutputNotWritableError, match="cannot create the folder.*Read-only"):
        prepare_output_dir(tmp_path / "run", force=False)


@pytest.mark.usefixtures("no_learning")
def test_a_file_in_the_way_of_the_out_path_is_named(tmp_path, capsys):
    (tmp_path / "a file").write_text("not a folder")
    err = usage_error(capsys, tiny_train(tmp_path / "a file" / "run"))
    assert "is a file, not a folder" in err


def test_missing_parent_folders_of_out_are_created(tmp_path):
    out = tmp_path / "does" / "not" / "exist yet"
    assert main(tiny_train(out)) == 0
    assert (out / "metrics.json").is_file() and (out / "checkpoint.pt").is_file()


def test_out_paths_with_spaces_and_non_ascii_characters_work(tmp_path):
    out = tmp_path / "my runs" / "λ = 0.5 — été 実験"
    assert main(tiny_train(out, "--lam", "0.5")) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["status"] == "finished" and metrics["num_episodes"] == 2
    assert any(out.glob("events.out.tfevents.*")) and (out / "learning_curve.png").is_file()
    assert main(["train", "--resume", str(out), "--updates", "3", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["num_episodes"] == 3

    config = tmp_path / "tiny random walk é.yaml"
    config.write_text(
        "experiment:\n  traces: [accumulate]\n  lambdas: [0.0, 1.0]\n  n_alphas: 2\n"
        "  runs: 2\n  episodes: 2\n  n_states: 5\n  seeds: 1\n",
        encoding="utf-8",
    )
    reproduced = tmp_path / "résultats avec espaces"
    argv = ["reproduce", "random-walk", "--config", str(config), "--out", str(reproduced)]
    assert main([*argv, "--no-progress"]) == 0
    result = json.loads((reproduced / "results.json").read_text(encoding="utf-8"))
    assert result["experiment"] == "random-walk" and (reproduced / "results.md").is_file()


# ------------------------------------------------------------------ interrupted result files
WRITER = textwrap.dedent("""
    import os, pathlib, signal, sys
    from agents.experiments.output import write_json
    path, how = pathlib.Path(sys.argv[1]), sys.argv[2]
    versions = [{"version": v, "values": [v + i / 7 for i in range(50_000)]} for v in (0, 1)]
    write_json(path, versions[0])
    if how == "at the worst moment":  # the new file fully written, not yet renamed into place
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    print("ready", flush=True)
    while True:
        for version in versions[::-1]:
            write_json(path, version)
""")


def test_a_results_file_killed_mid_write_holds_one_complete_version(tmp_path):
    """Writer processes that rewrite results.json (two versions of about 1 MB, through the
    library's write_json) are killed, one at a random moment of its loop, one between writing
    the new file and renaming it: results.json is always one complete version, never a mix or
    a truncation, and the second one still holds the version before the interrupted write."""
    folders, writers = {}, {}
    for how in ("at a random moment", "at the worst moment"):
        folders[how] = tmp_path / how
        prepare_output_dir(folders[how], force=False)
        command = [sys.executable, "-c", WRITER, str(folders[how] / "results.json"), how]
        writers[how] = subprocess.Popen(command, stdout=subprocess.PIPE)
    for how, writer in writers.items():
        assert writer.stdout.readline() == b"ready\n"
        if how == "at a random moment":
            time.sleep(0.2)
            writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    for how, folder in folders.items():
        data = json.loads((folder / "results.json").read_text())
        assert data["values"] == [data["version"] + i / 7 for i in range(50_000)]
        if how == "at the worst moment":
            assert data["version"] == 0 and (folder / "results.json.tmp").stat().st_size > 10**6


# ----------------------------------------------------------------------------------- resume
def test_resume_from_a_damaged_checkpoint_is_a_usage_error_that_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_train(out)) == 0
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # cut short, e.g. by a full disk
    before = snapshot(out)
    err = usage_error(capsys, ["train", "--resume", str(out), "--no-progress"])
    assert f"cannot read {checkpoint} as a BPLambda checkpoint: the file is truncated" in err
    assert snapshot(out) == before
