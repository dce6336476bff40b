"""`bpl reproduce --learners` (some learners of a comparison) and `--adopt` (run folders trained
elsewhere, continued as cells), on a tiny copy-repeat comparison: an adopted reproduction ends
with the cells and results of one that trained everything itself, and the adopted folders are
only read."""

import copy
import json
import pathlib

import pytest
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents.cli import main
from agents.experiments import cells as cells_module
from agents.experiments.comparison import comparison_runs, with_learners
from agents.experiments.config import load_config
from agents.experiments.training import train

UPDATES = 6
WALL_TIMES = {"elapsed_s", "cell_seconds", "seconds"}


def _tiny_copy_repeat(path: pathlib.Path) -> str:
    """Three learners, H = 3, a curriculum that advances after every batch."""
    config = copy.deepcopy(load_config("copy_repeat_quick"))
    config.update(num_envs=2)
    config["hyperparameters"]["hidden_size"] = 3
    config["env_kwargs"]["curriculum"]["threshold_bits"] = 50.0
    learners = config["experiment"]["learners"]
    config["experiment"]["learners"] = {k: learners[k] for k in ("BP(1)", "BPTT", "TBPTT(n=5)")}
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
        "--updates",
        str(UPDATES),
        "--workers",
        "1",
        "--no-progress",
        "--checkpoint-seconds",
        "0",
        *extra,
    ]


def _comparable_results(out: pathlib.Path) -> dict:
    """results.json without wall times and the two keys that name how it was made."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in WALL_TIMES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    data = json.loads((out / "results.json").read_text())
    for key in ("command", "adopted", "table"):
        data.pop(key, None)
    return strip(data)


def _parameters(path: pathlib.Path) -> list[torch.Tensor]:
    state = torch.load(path, weights_only=True)["state"]
    return [
        value
        for _, value in sorted(
            (f"{group}/{name}", value)
            for group, tensors in state.items()
            if isinstance(tensors, dict)
            for name, value in tensors.items()
            if isinstance(value, torch.Tensor)
        )
    ]


def _files(folder: pathlib.Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """BP(1) and BPTT, 2 seeds, trained by the reproduction itself: (its folder, the config)."""
    root = tmp_path_factory.mktemp("reference")
    config = _tiny_copy_repeat(root / "tiny.yaml")
    assert main(_argv(config, root / "out", "--learners", "BP(1)", "BPTT")) == 0
    return root / "out", config


def test_learners_trains_only_those_and_resume_keeps_to_them(reference, capsys):
    out, _ = reference
    assert sorted(p.name for p in (out / "cells").iterdir() if p.is_dir()) == sorted(
        ["BP_1_seed0", "BP_1_seed1", "BPTT_seed0", "BPTT_seed1"]
    )
    results = json.loads((out / "results.json").read_text())
    assert [row["label"] for row in results["results"]] == ["BP(1)", "BPTT"]
    assert "--learners 'BP(1)' BPTT" in results["command"]
    assert list(results["config"]["experiment"]["learners"]) == ["BP(1)", "BPTT"]
    capsys.readouterr()
    assert main(["reproduce", "--resume", str(out), "--report-only", "--no-progress"]) == 0
    assert [row["label"] for row in json.loads((out / "results.json").read_text())["results"]] == [
        "BP(1)",
        "BPTT",
    ]


def test_with_learners_refuses_labels_the_preset_lacks():
    config = load_config("copy_repeat_quick")
    assert list(with_learners(config, ["NoSG", "BPTT"])["experiment"]["learners"]) == [
        "BPTT",
        "NoSG",
    ]  # the preset's order
    with pytest.raises(ValueError, match=r"got \['LSTM'\]; the preset has \['BP\(0\)'"):
        with_learners(config, ["LSTM"])
    with pytest.raises(ValueError, match="distinct"):
        with_learners(config, ["BPTT", "BPTT"])
    with pytest.raises(ValueError, match="distinct"):
        with_learners(config, [])
    with pytest.raises(TypeError, match="list of labels"):
        with_learners(config, "BPTT")
    with pytest.raises(ValueError, match="compares no learners"):
        with_learners(load_config("toy_quick"), ["BPTT"])


def _runs_elsewhere(config_path: str, folder: pathlib.Path) -> None:
    """What a script outside the reproduction makes: `bpl train` folders named
    ``<label>_seed<k>`` with other logging settings; BPTT seed 1 stopped at half the budget,
    and a learner the reproduction leaves out."""
    runs = comparison_runs(yaml.safe_load(pathlib.Path(config_path).read_text()))
    made = [("BP(1)", 0, UPDATES), ("BPTT", 0, UPDATES), ("BPTT", 1, 3), ("TBPTT(n=5)", 0, 2)]
    for label, seed, updates in made:
        run = runs[label].derive(seed=seed, updates=updates, steps=None, log_interval=100)
        train(run, folder / f"{label}_seed{seed}", progress=False, stdout=False, plot=False)


def test_adopted_runs_end_as_the_cells_of_a_reproduction_that_trained_them(
    reference, tmp_path, capsys
):
    reference_out, config = reference
    elsewhere = tmp_path / "elsewhere"
    _runs_elsewhere(config, elsewhere)
    before = _files(elsewhere)
    out = tmp_path / "adopted"
    with pytest.warns(UserWarning, match="no cell of this reproduction"):
        code = main(_argv(config, out, "--learners", "BP(1)", "BPTT", "--adopt", str(elsewhere)))
    assert code == 0
    assert _files(elsewhere) == before  # only read
    results = json.loads((out / "results.json").read_text())
    assert results["adopted"] == {
        "BP_1_seed0": str(elsewhere / "BP(1)_seed0"),
        "BPTT_seed0": str(elsewhere / "BPTT_seed0"),
        "BPTT_seed1": str(elsewhere / "BPTT_seed1"),
    }
    assert "Adopted cells" in (out / "results.md").read_text()
    for name in ("BP_1_seed0", "BP_1_seed1", "BPTT_seed0", "BPTT_seed1"):
        for p, q in zip(
            _parameters(reference_out / "cells" / name / "checkpoint.pt"),
            _parameters(out / "cells" / name / "checkpoint.pt"),
            strict=True,
        ):
            assert torch.equal(p, q), name
    assert _comparable_results(out) == _comparable_results(reference_out)
    # the finished adopted run kept its own files; the reproduction only added its result
    adopted = out / "cells" / "BPTT_seed0"
    for name in ("checkpoint.pt", "progress.csv", "run.json"):
        assert (adopted / name).read_bytes() == (elsewhere / "BPTT_seed0" / name).read_bytes()
    # --force on the reproduction deletes the copies, never the runs they came from
    capsys.readouterr()
    assert main(_argv(config, out, "--learners", "BPTT", "--seeds", "1", "--force")) == 0
    assert _files(elsewhere) == before


def test_adopt_refuses_a_run_past_the_budget_before_creating_the_folder(
    reference, tmp_path, capsys
):
    _, config = reference
    elsewhere = tmp_path / "elsewhere"
    runs = comparison_runs(yaml.safe_load(pathlib.Path(config).read_text()))
    train(
        runs["BPTT"].derive(seed=0, updates=UPDATES + 2, steps=None),
        elsewhere / "long",
        progress=False,
        stdout=False,
        plot=False,
    )
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(_argv(config, out, "--adopt", str(elsewhere)))
    assert f"past this reproduction's budget of {UPDATES}" in capsys.readouterr().err
    assert not out.exists()


def test_adopt_refuses_two_runs_of_one_cell_and_a_missing_folder(reference, tmp_path, capsys):
    _, config = reference
    elsewhere = tmp_path / "elsewhere"
    runs = comparison_runs(yaml.safe_load(pathlib.Path(config).read_text()))
    for name in ("a", "b"):
        run = runs["BPTT"].derive(seed=0, updates=2, steps=None)
        train(run, elsewhere / name, progress=False, stdout=False, plot=False)
    with pytest.raises(SystemExit):
        main(_argv(config, tmp_path / "out", "--adopt", str(elsewhere)))
    assert "are runs of the same cell 'BPTT_seed0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_argv(config, tmp_path / "out", "--adopt", str(tmp_path / "absent")))
    assert "is not a folder of run folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "random-walk", "--quick", "--adopt", str(elsewhere)])
    assert "no cells to adopt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _InterruptAtOnce(BaseCallback):
    """Ctrl-C at the first token any cell trains."""

    def _on_step(self) -> bool:
        raise KeyboardInterrupt


def test_adopted_finished_cells_are_evaluated_before_any_cell_trains(
    reference, tmp_path, monkeypatch
):
    _, config = reference
    elsewhere = tmp_path / "elsewhere"
    runs = comparison_runs(yaml.safe_load(pathlib.Path(config).read_text()))
    run = runs["BPTT"].derive(seed=1, updates=UPDATES, steps=None)
    train(run, elsewhere / "BPTT_seed1", progress=False, stdout=False, plot=False)
    monkeypatch.setattr(cells_module, "_ParentWatch", _InterruptAtOnce)
    out = tmp_path / "out"
    # seed 0 comes first and must train; Ctrl-C there keeps seed 1's result
    assert main(_argv(config, out, "--learners", "BPTT", "--adopt", str(elsewhere))) == 130
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] and results["cells_missing"] == ["BPTT_seed0"]
    assert len(results["results"][0]["length_reached"]["values"]) == 1
