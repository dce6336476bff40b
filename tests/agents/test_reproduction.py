"""Resumable reproductions (`bpl reproduce --resume`), on a tiny copy-repeat comparison: an
interrupted or killed reproduction, resumed, ends with the results of an uninterrupted one, and
bad folders stop with an error naming the file."""

import copy
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents.cli import main
from agents.experiments import cells as cells_module
from agents.experiments.comparison import cell_record, curve_over_seeds, synth_path
from agents.experiments.config import load_config
from agents.experiments.run_config import RunConfig
from agents.experiments.run_logs import read_progress

WORKTREE = pathlib.Path(__file__).resolve().parents[2]
UPDATES = 6
WALL_TIMES = {"elapsed_s", "cell_seconds", "seconds"}
CELLS = ["BP_1_seed0", "BPTT_seed0", "BP_1_seed1", "BPTT_seed1"]  # seed by seed


def _tiny_copy_repeat(path: pathlib.Path) -> str:
    """Two learners, two seeds, H = 3; a curriculum that advances after every batch, so that a
    resumed cell must also restore the env's curriculum (T = 5, 7, 9, 12, 15, 19)."""
    config = copy.deepcopy(load_config("copy_repeat_quick"))
    config.update(num_envs=2)
    config["hyperparameters"]["hidden_size"] = 3
    config["env_kwargs"]["curriculum"]["threshold_bits"] = 50.0
    learners = config["experiment"]["learners"]
    config["experiment"]["learners"] = {k: learners[k] for k in ("BP(1)", "BPTT")}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _argv(config: str, out: pathlib.Path, *extra: str) -> list[str]:
    return [
        "reproduce",
        "copy-repeat",
        "--config",
        config,
        "--out",
        str(out),
        "--seeds",
        "2",
        "--workers",
        "1",
        "--no-progress",
        "--checkpoint-seconds",
        "0",
        *extra,
    ]


def _without_wall_times(value):
    if isinstance(value, dict):
        return {k: _without_wall_times(v) for k, v in value.items() if k not in WALL_TIMES}
    if isinstance(value, list):
        return [_without_wall_times(v) for v in value]
    return value


def _results(out: pathlib.Path) -> dict:
    return _without_wall_times(json.loads((out / "results.json").read_text()))


def _files(folder: pathlib.Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a folder: its modification time (ns) and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _parameters(path: pathlib.Path) -> list[torch.Tensor]:
    state = torch.load(path, weights_only=True)["state"]
    return [v for _, v in sorted(_tensors(state))]


def _tensors(value, prefix=""):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}/{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}/{i}")


def _assert_same_cells(a: pathlib.Path, b: pathlib.Path) -> None:
    """Every cell of two reproductions ends with the same parameters and the same log."""
    for name in CELLS:
        for p, q in zip(
            _parameters(a / "cells" / name / "checkpoint.pt"),
            _parameters(b / "cells" / name / "checkpoint.pt"),
            strict=True,
        ):
            assert torch.equal(p, q)
        progress_a = read_progress(a / "cells" / name / "progress.csv")
        progress_b = read_progress(b / "cells" / name / "progress.csv")
        for key in ("train/loss", "train/sequence_length", "time/total_timesteps"):
            np.testing.assert_array_equal(progress_a[key], progress_b[key])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted reproduction: (its folder, the tiny config)."""
    root = tmp_path_factory.mktemp("straight")
    config = _tiny_copy_repeat(root / "tiny.yaml")
    assert main(_argv(config, root / "out", "--updates", str(UPDATES))) == 0
    return root / "out", config


class _InterruptAtBatch(BaseCallback):
    """Ctrl-C at the first token of the ``at``-th batch counted over all cells."""

    batches = 0

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if type(self).batches + 1 == self.at:
            raise KeyboardInterrupt
        return True

    def _on_rollout_end(self) -> None:
        type(self).batches += 1


def _interrupted(tmp_path, monkeypatch, capsys, config: str, at: int) -> pathlib.Path:
    """A reproduction stopped by Ctrl-C at batch ``at`` (counted over the cells in order)."""
    out = tmp_path / "out"
    _InterruptAtBatch.batches = 0
    monkeypatch.setattr(cells_module, "_ParentWatch", lambda: _InterruptAtBatch(at))
    assert main(_argv(config, out, "--updates", str(UPDATES))) == 130
    assert f"bpl reproduce --resume {out}" in capsys.readouterr().err
    monkeypatch.undo()
    return out


def test_an_interrupted_reproduction_resumes_to_the_uninterrupted_results(
    straight, tmp_path, monkeypatch, capsys
):
    reference, config = straight
    # Ctrl-C in the second cell (BPTT, seed 0) after 3 of its 6 batches.
    out = _interrupted(tmp_path, monkeypatch, capsys, config, at=UPDATES + 4)
    run = json.loads((out / "cells" / "BPTT_seed0" / "run.json").read_text())
    assert run["status"] == "interrupted" and run["num_episodes"] == 3
    assert not (out / "cells" / "BP_1_seed1").exists()
    partial = json.loads((out / "results.json").read_text())  # written on the way out
    assert partial["partial"] and partial["cells_missing"] == CELLS[1:]
    assert [row["label"] for row in partial["results"]] == ["BP(1)"]
    finished_cell = _files(out / "cells" / "BP_1_seed0")

    assert (
        main(
            [
                "reproduce",
                "--resume",
                str(out),
                "--workers",
                "1",
                "--no-progress",
                "--checkpoint-seconds",
                "0",
            ]
        )
        == 0
    )
    assert _results(out) == _results(reference)
    assert not _results(out)["partial"]
    _assert_same_cells(out, reference)
    assert _files(out / "cells" / "BP_1_seed0") == finished_cell  # never rerun, never rewritten


def test_report_only_reports_the_finished_cells_and_trains_nothing(
    straight, tmp_path, monkeypatch, capsys
):
    reference, config = straight
    out = _interrupted(tmp_path, monkeypatch, capsys, config, at=2 * UPDATES + 2)
    before = _files(out / "cells")
    assert (
        main(["reproduce", "copy-repeat", "--resume", str(out), "--report-only", "--no-progress"])
        == 0
    )
    assert _files(out / "cells") == before
    partial, complete = _results(out), _results(reference)
    assert partial["partial"] and partial["cells_missing"] == CELLS[2:]
    assert "Partial results: 2 of 4 cells finished" in (out / "results.md").read_text()
    for row, full in zip(partial["results"], complete["results"], strict=True):
        assert row["seeds"] == 1 and row["label"] == full["label"]
        assert row["length_reached"]["values"] == full["length_reached"]["values"][:1]
        assert row["final_loss_bits"]["values"] == full["final_loss_bits"]["values"][:1]


def test_resume_with_more_updates_extends_every_cell_exactly(straight, tmp_path):
    reference, config = straight
    out = tmp_path / "out"
    assert main(_argv(config, out, "--updates", str(UPDATES // 2))) == 0
    assert _results(out)["results"][0]["length_curve"]["mean"] == [5, 7, 9]
    assert (
        main(
            [
                "reproduce",
                "--resume",
                str(out),
                "--updates",
                str(UPDATES),
                "--workers",
                "1",
                "--no-progress",
                "--checkpoint-seconds",
                "0",
            ]
        )
        == 0
    )
    assert _results(out) == _results(reference)  # including the command: --updates 6
    _assert_same_cells(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_stopped_reproduction_with_two_workers_resumes_exactly(tmp_path, stop):
    """SIGKILL or SIGINT of the reproduction's process alone while its two worker processes
    train: after SIGKILL the orphaned workers exit by themselves without writing, after SIGINT
    they stop at their next batch boundary; --resume continues every cell from its last
    checkpoint (a fixed T = 5 and 40 updates, so that cells are still running at the signal)."""
    config = copy.deepcopy(
        yaml.safe_load(pathlib.Path(_tiny_copy_repeat(tmp_path / "tiny.yaml")).read_text())
    )
    config["env_kwargs"]["curriculum"]["threshold_bits"] = 1e-6  # never advances
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        "reproduce",
        "copy-repeat",
        "--config",
        str(path),
        "--seeds",
        "2",
        "--updates",
        "40",
        "--workers",
        "2",
        "--no-progress",
        "--checkpoint-seconds",
        "0",
    ]
    straight, out = tmp_path / "straight", tmp_path / "out"
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker processes
    try:
        assert main([*argv, "--out", str(straight)]) == 0
        process = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", *argv, "--out", str(out)],
            cwd=WORKTREE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("cells/*/checkpoint.pt")):
            time.sleep(0.002)
        os.kill(process.pid, stop)
        assert process.wait(timeout=60) == (-signal.SIGKILL if stop == signal.SIGKILL else 130)
        unfinished = [c for c in CELLS if not (out / "cells" / c / "result.json").exists()]
        assert unfinished, "every cell finished before the kill: nothing was tested"
        time.sleep(2.0)  # the orphaned workers notice at their next batch boundary
        assert (
            main(
                [
                    "reproduce",
                    "--resume",
                    str(out),
                    "--workers",
                    "2",
                    "--no-progress",
                    "--checkpoint-seconds",
                    "0",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(torch_threads)
    assert _results(out) == _results(straight)
    _assert_same_cells(out, straight)


# ------------------------------------------------------------------------------ bad input
def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_resume_refuses_a_folder_that_is_not_a_reproduction(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    error = _error(capsys, ["reproduce", "--resume", str(tmp_path)])
    assert str(tmp_path / "reproduction.json") in error and "not a reproduction" in error
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    for text, expected in (("{", "not valid JSON"), ('{"format": 1}', "lacks ['config'")):
        (tmp_path / "reproduction.json").write_text(text)
        error = _error(capsys, ["reproduce", "--resume", str(tmp_path)])
        assert str(tmp_path / "reproduction.json") in error and expected in error
        assert (tmp_path / "reproduction.json").read_text() == text


def test_resume_refuses_a_reproduction_of_another_experiment(straight, capsys):
    reference, _ = straight
    before = _files(reference)
    error = _error(capsys, ["reproduce", "digits", "--resume", str(reference)])
    assert str(reference / "reproduction.json") in error and "'copy-repeat'" in error
    assert _files(reference) == before


@pytest.mark.parametrize("damage", ["truncated checkpoint", "corrupted run.json"])
def test_resume_refuses_a_damaged_cell_naming_the_file_and_deletes_nothing(
    straight, tmp_path, monkeypatch, capsys, damage
):
    _, config = straight
    out = _interrupted(tmp_path, monkeypatch, capsys, config, at=UPDATES + 4)
    cell = out / "cells" / "BPTT_seed0"
    if damage == "truncated checkpoint":
        broken = cell / "checkpoint.pt"
        broken.write_bytes(broken.read_bytes()[:100])
    else:
        broken = cell / "run.json"
        broken.write_text(broken.read_text()[:-20])
    before = _files(out)
    error = _error(capsys, ["reproduce", "--resume", str(out), "--no-progress"])
    assert str(broken) in error
    assert _files(out) == before


def test_resume_refuses_a_smaller_budget_and_clashing_options(straight, capsys):
    reference, _ = straight
    error = _error(capsys, ["reproduce", "--resume", str(reference), "--updates", "2"])
    assert "at least the reproduction's budget (6 updates)" in error
    error = _error(capsys, ["reproduce", "--resume", str(reference), "--quick", "--seeds", "1"])
    assert "['--quick', '--seeds']" in error
    assert "--resume DIR" in _error(capsys, ["reproduce", "toy", "--report-only"])
    assert "--resume DIR" in _error(capsys, ["reproduce"])


def test_updates_for_an_experiment_without_that_budget_is_refused(tmp_path, capsys):
    error = _error(
        capsys, ["reproduce", "random-walk", "--updates", "5", "--out", str(tmp_path / "o")]
    )
    assert "no budget in updates" in error and not (tmp_path / "o").exists()


def test_experiments_that_are_not_resumable_say_so(tmp_path, capsys):
    config = copy.deepcopy(load_config("random_walk_quick"))
    config["experiment"].update(lambdas=[0.0], n_alphas=2, runs=2, episodes=1)
    path = tmp_path / "walk.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "walk"
    assert (
        main(
            [
                "reproduce",
                "random-walk",
                "--config",
                str(path),
                "--out",
                str(out),
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    error = _error(capsys, ["reproduce", "--resume", str(out)])
    assert "not resumable" in error and str(out / "reproduction.json") in error


# ------------------------------------------------------------------------ table columns
@pytest.mark.parametrize(
    ("learner", "hyperparameters", "expected"),
    [
        ("bp_lambda", {}, "trace, clipped"),  # BPLambda's defaults
        ("bp_lambda", {"clip_synth_update": False}, "trace"),
        ("bp_lambda", {"synth_update": "forward_view", "clip_synth_update": False}, "forward view"),
        ("dni", {}, "–"),
        ("bptt", {}, "–"),
    ],
)
def test_the_synthesiser_path_column_names_what_the_learner_runs(
    learner, hyperparameters, expected
):
    run = RunConfig(
        env="bpl/LineDraw-v0", learner=learner, hyperparameters=hyperparameters, updates=1
    )
    assert synth_path(run) == expected


def test_a_cell_record_holds_its_training_time_and_mean_clip_fraction(tmp_path):
    """The mean over batches of a logged train/synth_clip_fraction (batches that did not log it
    are skipped), None where no batch logs it."""
    (tmp_path / "run.json").write_text(json.dumps({"elapsed_s": 12.5}))
    (tmp_path / "progress.csv").write_text(
        "time/episodes,train/loss,train/synth_clip_fraction\n1,0.5,0.25\n2,0.4,\n3,0.3,1.0\n"
    )
    assert cell_record(tmp_path) == {"seconds": 12.5, "synth_clip_fraction": (0.25 + 1.0) / 2}
    (tmp_path / "progress.csv").write_text("time/episodes,train/loss\n1,0.5\n")
    assert cell_record(tmp_path)["synth_clip_fraction"] is None


def test_curves_are_averaged_over_windows_then_over_seeds():
    curves = [[1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0]]
    curve = curve_over_seeds(curves, points=2)  # windows of ceil(5 / 2) = 3 updates
    assert curve["update"].tolist() == [3, 5]
    np.testing.assert_allclose(curve["mean"], [(2.0 + 4.0) / 2, (4.5 + 6.5) / 2])
    np.testing.assert_allclose(curve["std"], [np.std([2.0, 4.0], ddof=1)] * 2)
    single = curve_over_seeds(curves[:1], points=10)
    assert single["update"].tolist() == [1, 2, 3, 4, 5] and single["std"] is None
