"""The experiments behind `bpl reproduce`, `bpl compare` and `bpl sweep`, on tiny budgets, and
the packaged presets against the paper's settings (docs/algorithm.md#the-reference-experiments)."""

import copy
import gzip
import json
import math
import pathlib
import re
import socket
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from agents.analysis import alignment
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT
from agents.cli import main
from agents.experiments import hyperparameters as hp
from agents.experiments.building import env_arguments
from agents.experiments.compare import run as _compare_run  # noqa: F401  (module imports)
from agents.experiments.comparison import comparison_runs
from agents.experiments.config import load_config, preset_names
from agents.experiments.copy_repeat import final_stage_loss
from agents.experiments.output import (
    OutputExistsError,
    format_mean_std,
    markdown_table,
    mean_std,
    prepare_output_dir,
    write_text,
)
from agents.experiments.output_folder import MANIFEST
from agents.experiments.parallel import connect_ray
from agents.experiments.random_walk import sweep
from agents.experiments.run_config import RunConfig
from agents.experiments.run_logs import read_progress
from agents.experiments.sweep import expand_grid
from agents.experiments.toy import make_cells
from agents.experiments.tune import TuneConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SQRT_03 = math.sqrt(np.mean(((np.arange(1, 20) - 10) / 10) ** 2))  # zero values, 19 states


# ------------------------------------------------------------------------------ presets
def test_the_toy_preset_is_the_papers_toy_experiment():
    config = load_config("toy")
    assert config["env"] == "bpl/LineDraw-v0" and config["env_kwargs"]["sequence_length"] == 10
    assert config["num_envs"] == 10 and config["updates"] == 1000
    assert config["hyperparameters"] == {
        "core": "rnn",
        "activation": "identity",
        "hidden_size": 30,
        "lam": 1.0,
        "gamma": 1.0,
        "sg_weight": 1.0,
        "lr_core": 0.0,
        "lr_readout": 0.0,
        "lr_synth": 1e-4,
        "synth_update": "replay",  # the trace path's numbers (tests/agents/test_replay.py)
    }
    experiment = config["experiment"]
    assert experiment["lambdas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert experiment["sequence_lengths"] == [10, 30, 60] and experiment["seeds"] == 3
    assert experiment["cores"]["frozen"] == {"lr_core": 0.0, "lr_readout": 0.0}
    assert experiment["cores"]["learning"]["lr_core"] > 0
    assert experiment["cores"]["frozen orthogonal"] == {
        "lr_core": 0.0,
        "lr_readout": 0.0,
        "recurrent_init": "orthogonal",
    }
    assert experiment["cores"]["learning orthogonal"] == {
        **experiment["cores"]["learning"],
        "recurrent_init": "orthogonal",
    }
    env = gym.make("bpl/LineDraw-v0", **config["env_kwargs"])
    assert env.unwrapped.task.input_size == 10 and env.unwrapped.task.output_size == 2


PAPER_SEQMNIST = {
    "core": "lstm",
    "hidden_size": 30,
    "lr_core": 3e-4,
    "lr_readout": 3e-4,
    "lr_synth": 3e-4,
    "lam": 1.0,
    "gamma": 0.9,
    "sg_weight": 0.1,
}
FORWARD_VIEW = {"synth_update": "forward_view", "clip_synth_update": False}


def test_the_seqmnist_presets_are_the_papers():
    subset = load_config("seqmnist")  # the bundled subset: 4,000 training images
    assert subset["env"] == "bpl/SequentialMNIST-v0" and subset["env_kwargs"] == {}
    assert subset["num_envs"] == 50 and subset["updates"] == 50 * 4000 // 50  # 50 epochs
    train = gym.make("bpl/SequentialMNIST-v0").unwrapped.dataset()[1]
    test = gym.make("bpl/SequentialMNIST-v0", split="test").unwrapped.dataset()[1]
    assert (len(train), len(test)) == (4000, 1000)
    assert subset["hyperparameters"] == {**PAPER_SEQMNIST, **FORWARD_VIEW}
    full = load_config("seqmnist_full")  # the IDX files of --mnist-root: 60,000 images
    assert full["updates"] == 50 * 60000 // 50
    assert {k: v for k, v in full.items() if k != "updates"} == {
        k: v for k, v in subset.items() if k != "updates"
    }
    digits = load_config("digits")
    assert digits["hyperparameters"] == PAPER_SEQMNIST  # the trace path: affordable at T = 8
    assert digits["num_envs"] == 50 and digits["updates"] == 50 * math.ceil(1438 / 50)


def test_the_copy_repeat_preset_is_the_papers():
    config = load_config("copy_repeat")
    assert config["env"] == "bpl/CopyRepeat-v0" and config["num_envs"] == 100
    # the reference code: 15,000 epochs of ceil(1,000 training sequences / batch 100) batches
    assert config["updates"] == 15000 * math.ceil(1000 / 100)
    assert config["env_kwargs"]["curriculum"] == {
        "pattern_length": 1,
        "repeats": 1,
        "threshold_bits": 0.15,
    }
    assert config["hyperparameters"] == {
        "core": "lstm",
        "hidden_size": 100,
        "lr_core": 1e-3,
        "lr_readout": 1e-3,
        "lr_synth": 1e-5,
        "lam": 1.0,
        "gamma": 0.9,
        "sg_weight": 1.0,
        **FORWARD_VIEW,
    }
    runs = comparison_runs(config)
    assert runs["BP(1)"].hyperparameters["synth_update"] == "forward_view"
    assert "synth_update" not in runs["DNI(n=5)"].hyperparameters  # BP(λ) only


@pytest.mark.parametrize("name", ["seqmnist", "seqmnist_full", "copy_repeat"])
def test_the_paper_comparisons_have_the_papers_learners_and_seeds(name):
    config = load_config(name)
    assert config["experiment"]["seeds"] == 3
    learners = {
        label: (entry["learner"], entry.get("hyperparameters", {}))
        for label, entry in config["experiment"]["learners"].items()
    }
    paper = {
        "BP(0)": ("bp_lambda", {"lam": 0.0}),
        "BP(0.5)": ("bp_lambda", {"lam": 0.5}),
        "BP(1)": ("bp_lambda", {"lam": 1.0}),
        "BPTT": ("bptt", {}),
        "TBPTT(n=5)": ("tbptt", {"n": 5}),
        "DNI(n=5)": ("dni", {"n": 5}),
        "NoSG": ("nosg", {}),
    }
    assert {label: learners[label] for label in paper} == paper  # (and the RTRL approximations)


def test_comparisons_have_the_papers_learners_and_the_online_rtrl_approximations():
    for name in ("digits", "seqmnist", "copy_repeat"):
        learners = load_config(name)["experiment"]["learners"]
        names = sorted({entry["learner"] for entry in learners.values()})
        assert names == ["bp_lambda", "bptt", "dni", "eprop", "nosg", "snap1", "tbptt", "uoro"]
        lambdas = sorted(
            entry.get("hyperparameters", {}).get("lam", 1.0)
            for entry in learners.values()
            if entry["learner"] == "bp_lambda"
        )
        assert lambdas == [0.0, 0.5, 1.0]


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


@pytest.mark.parametrize(
    "name", ["toy", "digits", "seqmnist", "copy_repeat", "random_walk", "compare"]
)
def test_quick_presets_have_the_full_presets_structure(name):
    full, quick = load_config(name), load_config(f"{name}_quick")
    assert _shape(full) == _shape(quick)
    for key in ("lambdas", "learners", "traces", "sequence_lengths", "cores"):
        if key in full["experiment"]:
            assert quick["experiment"][key] == full["experiment"][key]


@pytest.mark.parametrize("name", sorted(set(preset_names())))
def test_every_preset_is_valid(name):
    config = load_config(name)
    if name.startswith("sweep_"):
        assert len(expand_grid(config, name)) > 1
        return
    if name.startswith("tune_"):
        assert len(TuneConfig.from_mapping(config, name).ranges) > 1
        return
    if "env" in config:
        run = RunConfig.from_file(name)[0].resolved()
        env_arguments(run.env, run.env_kwargs)
    experiment = config["experiment"]
    if "learners" in experiment:
        runs = comparison_runs(config)
        assert list(runs) == list(experiment["learners"])
    if "cores" in experiment:
        cells = make_cells(config, [0])
        assert len(cells) == (
            len(experiment["cores"])
            * len(experiment["lambdas"])
            * len(experiment["sequence_lengths"])
        )
    if "toy" in experiment:
        RunConfig.from_mapping(experiment["toy"]["run"]).resolved()


# ---------------------------------------------------------------------- small helpers
@pytest.mark.parametrize(
    "value, annotation, expected",
    [
        ("0.5", float, 0.5),
        ("1e-4", float, 1e-4),
        (3, float, 3.0),
        ("64", int, 64),
        ("1e3", int, 1000),
        ("true", bool, True),
        ("No", bool, False),
        ("none", int | None, None),
        ("5", int | None, 5),
        ("cuda", str | torch.device, "cuda"),
        ("lstm", str, "lstm"),
        ("0.5", Any, 0.5),
        ("[1, 2]", Any, [1, 2]),
        (["a", "b"], str | Sequence[str], ["a", "b"]),
        ("reference", str | Sequence[str], "reference"),
    ],
)
def test_values_are_converted_to_the_annotation(value, annotation, expected):
    converted = hp.convert("x", value, annotation)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    "value, annotation",
    [
        ("abc", float),
        ("2.5", int),
        ("maybe", bool),
        (True, int),
        (1, str),
        ("none", int),
        ([1, 2], str | Sequence[str]),
        (["a"], str | None),
    ],
)
def test_values_that_do_not_fit_are_refused_naming_the_argument(value, annotation):
    with pytest.raises(ValueError, match="'x'"):
        hp.convert("x", value, annotation)


def test_mean_std_is_the_sample_statistics():
    values = [0.3, 0.5, 0.9, 0.25]
    summary = mean_std(values)
    assert summary["mean"] == pytest.approx(statistics.mean(values), rel=1e-15)
    assert summary["std"] == pytest.approx(statistics.stdev(values), rel=1e-15)
    assert mean_std([0.7])["std"] is None and format_mean_std(mean_std([0.7])) == "0.700"
    assert (
        format_mean_std(summary, 2) == f"{statistics.mean(values):.2f} ± "
        f"{statistics.stdev(values):.2f}"
    )
    assert markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_output_folders_are_replaced_only_with_force(tmp_path):
    out = tmp_path / "out"
    prepare_output_dir(out, force=False)
    write_text(out / "old.md", "x")
    with pytest.raises(OutputExistsError, match="--force"):
        prepare_output_dir(out, force=False)
    assert prepare_output_dir(out, force=True) == out
    assert [p.name for p in out.iterdir()] == [MANIFEST]


# ----------------------------------------------------------------- reproduce, tiny budgets
def _tiny(name: str, tmp_path: pathlib.Path, change) -> str:
    """The quick preset ``name``, shrunk by ``change(config)``, written to a file."""
    config = copy.deepcopy(load_config(f"{name}_quick"))
    change(config)
    path = tmp_path / f"{name}_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _reproduce(tmp_path, *argv) -> dict:
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    result = json.loads((out / "results.json").read_text())
    for key in ("experiment", "quick", "seeds", "elapsed_s", "config", "results", "figures"):
        assert key in result
    table_lines = (out / "results.md").read_text().splitlines()
    assert sum(line.startswith("|---") for line in table_lines) == 1
    for figure in result["figures"]:
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC
    return result


def test_reproduce_toy(tmp_path):
    def change(config):
        config["updates"] = 2
        config["experiment"].update(lambdas=[0.0, 1.0], sequence_lengths=[3, 4], eval_sequences=3)

    result = _reproduce(
        tmp_path, "reproduce", "toy", "--config", _tiny("toy", tmp_path, change), "--seeds", "2"
    )
    rows = result["results"]
    assert len(rows) == 4 * 2 * 2 and result["seeds"] == [0, 1]  # conditions x T x λ
    for row in rows:
        assert set(row) == {"core", "sequence_length", "lam", "alignment", "alignment_per_step"}
        assert len(row["alignment_per_step"]["mean"]) == row["sequence_length"] - 1
        assert all(-1 <= v <= 1 for v in row["alignment"]["values"])
    # Cells against the same runs made by hand with the library.
    for condition in ("learning", "frozen orthogonal"):
        row = next(
            r for r in rows if (r["core"], r["sequence_length"], r["lam"]) == (condition, 4, 1.0)
        )
        hyper = {
            **result["config"]["hyperparameters"],
            **result["config"]["experiment"]["cores"][condition],
        }
        learner = BPLambda(
            gym.make_vec("bpl/LineDraw-v0", num_envs=10, sequence_length=4),
            **{**hyper, "lam": 1.0},
            n_envs=10,
            seed=1,
        )
        learner.learn(episodes=2)
        by_hand = alignment(
            learner,
            gym.make_vec("bpl/LineDraw-v0", num_envs=10, sequence_length=4),
            n_sequences=3,
            seed=10_001,
        )
        assert row["alignment"]["values"][1] == pytest.approx(by_hand.mean(), abs=1e-6)
    assert hyper["recurrent_init"] == "orthogonal"


def test_reproduce_random_walk(tmp_path):
    def change(config):
        config["experiment"].update(lambdas=[0.0, 0.8], n_alphas=3, runs=3, episodes=2)

    result = _reproduce(
        tmp_path, "reproduce", "random-walk", "--config", _tiny("random_walk", tmp_path, change)
    )
    assert len(result["results"]) == 2 * 2  # trace kinds x λ
    direct = {
        seed: sweep(
            "accumulate", [0.0, 0.8], np.linspace(0, 1, 3), runs=3, episodes=2, seed=3 * seed
        )
        for seed in result["seeds"]
    }  # disjoint walks per seed
    for row in result["results"]:
        assert row["rms_at_alpha_0"]["values"] == pytest.approx([SQRT_03] * 2, rel=1e-14)
        if row["trace"] == "accumulate":
            i, j = [0.0, 0.8].index(row["lam"]), int(round(row["best_alpha"] * 2))
            assert row["best_rms"]["values"] == [direct[s][i, j] for s in result["seeds"]]


def test_compare(tmp_path):
    def change(config):
        experiment = config["experiment"]
        experiment.update(lambdas=[0.0, 1.0])
        experiment["random_walk"].update(n_alphas=3, runs=2, episodes=2)
        experiment["toy"].update(lr_synth=[1e-3, 1e-2], eval_sequences=2)
        experiment["toy"]["run"].update(updates=2, env_kwargs={"sequence_length": 3})

    result = _reproduce(tmp_path, "compare", "--config", _tiny("compare", tmp_path, change))
    assert result["figures"] == ["compare.png"]
    assert [row["lam"] for row in result["results"]] == [0.0, 1.0]
    for lam in ("0", "1"):
        assert result["rms"][lam][0] == pytest.approx(SQRT_03, rel=1e-14)
        assert len(result["alignment"][lam]["mean"]) == 2
    best = result["results"][1]
    assert best["bp_best_alignment"]["mean"] == max(result["alignment"]["1"]["mean"])


def _accuracy_by_hand(learner, split_env) -> float:
    inputs, labels = split_env.unwrapped.dataset()
    state, hits = None, 0
    for t in range(inputs.shape[1]):
        prediction, state = learner.predict(inputs[:, t], state)
    hits = int((prediction.argmax(1) == labels).sum())
    return hits / len(labels)


def test_reproduce_digits(tmp_path):
    def change(config):
        config.update(updates=2, num_envs=4)
        config["hyperparameters"]["hidden_size"] = 3
        learners = config["experiment"]["learners"]
        config["experiment"]["learners"] = {k: learners[k] for k in ("BP(1)", "BPTT")}

    result = _reproduce(
        tmp_path,
        "reproduce",
        "digits",
        "--config",
        _tiny("digits", tmp_path, change),
        "--seeds",
        "1",
    )
    rows = {row["label"]: row for row in result["results"]}
    assert set(rows) == {"BP(1)", "BPTT"}
    for row in rows.values():
        for key in ("test_accuracy", "test_loss", "train_loss"):
            assert set(row[key]) == {"mean", "std", "values"}
        assert row["train_loss_curve"]["update"] == [1, 2]
    hyper = result["config"]["hyperparameters"]
    bptt = BPTT(
        gym.make_vec("bpl/SequentialDigits-v0", num_envs=4),
        n_envs=4,
        seed=0,
        **{k: hyper[k] for k in ("core", "hidden_size", "lr_core", "lr_readout")},
    )
    bptt.learn(episodes=2)
    test_env = gym.make("bpl/SequentialDigits-v0", split="test")
    assert rows["BPTT"]["test_accuracy"]["values"][0] == pytest.approx(
        _accuracy_by_hand(bptt, test_env), abs=1e-12
    )


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_reproduce_seqmnist_with_mnist_files_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for split, n in (("train", 12), ("t10k", 6)):
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))

    def change(config):
        config.update(updates=1, num_envs=2)
        config["hyperparameters"]["hidden_size"] = 2
        config["experiment"]["learners"] = {"BPTT": {"learner": "bptt"}}

    result = _reproduce(
        tmp_path,
        "reproduce",
        "seqmnist",
        "--mnist-root",
        str(root),
        "--config",
        _tiny("seqmnist", tmp_path, change),
        "--seeds",
        "1",
    )
    assert result["config"]["env"] == "bpl/SequentialMNIST-v0"
    assert result["config"]["env_kwargs"]["root"] == str(root)
    accuracy = result["results"][0]["test_accuracy"]["values"][0]
    assert accuracy * 6 == pytest.approx(round(accuracy * 6))  # hits out of 6 test images


def test_reproduce_copy_repeat_follows_the_curriculum(tmp_path):
    def change(config):
        config.update(updates=3, num_envs=2)
        config["hyperparameters"]["hidden_size"] = 3
        config["env_kwargs"]["curriculum"]["threshold_bits"] = 50.0  # every batch advances
        learners = config["experiment"]["learners"]
        config["experiment"]["learners"] = {k: learners[k] for k in ("BP(0.5)", "NoSG")}

    result = _reproduce(
        tmp_path,
        "reproduce",
        "copy-repeat",
        "--config",
        _tiny("copy_repeat", tmp_path, change),
        "--seeds",
        "1",
    )
    for row in result["results"]:
        # T of each batch (docs/algorithm.md#copy-repeat)
        assert row["length_curve"]["mean"] == [5, 7, 9]
        assert row["length_curve"]["update"] == [1, 2, 3]
        assert row["length_reached"]["values"] == [12] and row["stages_passed"]["values"] == [3]
        assert 0 < row["final_loss_bits"]["values"][0] < 50.0  # the batch at T = 9 advanced
    table = (tmp_path / "out" / "results.md").read_text()
    assert "final loss (bits)" in table and "passed below 50.0 bits" in table


@pytest.mark.parametrize(
    ("lengths", "window", "expected"),
    [
        ([5, 5, 7, 7, 7], 100, (3 + 4 + 5) / 3),  # only the trailing stage counts
        ([5, 5, 7, 7, 7], 2, (4 + 5) / 2),  # at most `window` batches
        ([5, 5, 5, 5, 5], 100, 3.0),  # never advanced: every batch
        ([5, 7, 5, 7, 7], 100, (4 + 5) / 2),  # the trailing run, not every batch at that T
        ([5, 7, 9, 12, 15], 100, 5.0),  # advanced every batch: the last one
    ],
)
def test_final_stage_loss_averages_the_trailing_batches_of_the_last_stage(
    lengths, window, expected
):
    assert final_stage_loss(lengths, [1.0, 2.0, 3.0, 4.0, 5.0], window) == pytest.approx(expected)


def test_a_bad_experiment_config_stops_before_anything_is_written(tmp_path, capsys):
    def change(config):
        config["experiment"]["learners"] = {
            "BPTT": {"learner": "bptt", "hyperparameters": {"lam": 1.0}}
        }

    config = _tiny("digits", tmp_path, change)
    with pytest.raises(SystemExit):
        main(["reproduce", "digits", "--config", config, "--out", str(tmp_path / "o")])
    assert "unknown hyper-parameter(s) ['lam']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_options_and_experiments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "toy", "--mnist-root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "takes no options" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- sweep
def _grid(tmp_path, **changes) -> str:
    grid = {
        "env": "bpl/LineDraw-v0",
        "env_kwargs": {"sequence_length": 3},
        "learner": ["bp_lambda", "bptt"],
        "num_envs": 2,
        "updates": 2,
        "hyperparameters": {"hidden_size": 3},
        "grid": {"lam": [0.0, 1.0]},
        "seeds": 1,
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_sweep_runs_a_grid_in_two_processes(tmp_path):
    out = tmp_path / "sweep"
    assert (
        main(["sweep", _grid(tmp_path), "--workers", "2", "--out", str(out), "--no-progress"]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    names = [run["name"] for run in summary["runs"]]
    assert names == [
        "LineDraw-v0_bp_lambda_lam=0_seed0",
        "LineDraw-v0_bp_lambda_lam=1_seed0",
        "LineDraw-v0_bptt_seed0",
    ]  # bptt takes no λ: it runs once
    for run in summary["runs"]:
        progress = read_progress(out / run["name"] / "progress.csv")
        assert run["metrics"]["final"]["train/loss"] == pytest.approx(progress["train/loss"][-1])
        assert (out / run["name"] / "checkpoint.pt").is_file()
    assert len(summary["groups"]) == 3 and "| configuration |" in summary["table"]
    by_hand = BPLambda(
        gym.make_vec("bpl/LineDraw-v0", num_envs=2, sequence_length=3),
        hidden_size=3,
        lam=1.0,
        n_envs=2,
        seed=0,
    )
    by_hand.learn(episodes=2)
    swept = BPLambda.load(out / names[1] / "checkpoint.pt")
    for p, q in zip(swept.synthesiser.parameters(), by_hand.synthesiser.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sweep_names_that_no_learner_takes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'lamda'.*valid: .*'lam'"):
        expand_grid(
            yaml.safe_load(pathlib.Path(_grid(tmp_path, grid={"lamda": [0.5]})).read_text())
        )


def test_the_ray_backend_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        main(["sweep", _grid(tmp_path), "--backend", "ray", "--out", str(out)])
    assert "pip install 'bp-lambda[ray]'" in capsys.readouterr().err
    assert not out.exists()


class _RayThatMustNotStart:
    """Stands in for the ray module: never initialised, and init() must not be reached."""

    @staticmethod
    def is_initialized():
        return False

    @staticmethod
    def init(**kwargs):
        raise AssertionError(f"ray.init({kwargs}) reached")


@pytest.mark.parametrize(
    "address, error, message",
    [
        (
            "127.0.0.1",
            ValueError,
            "Ray address must be HOST:PORT, ray://HOST:PORT or 'auto', got '127.0.0.1'",
        ),
        ("ray://head:port", ValueError, "got 'ray://head:port'"),
        ("127.0.0.1:{port}", ConnectionError, "cannot reach the Ray cluster at '127.0.0.1:{port}'"),
        ("ray://127.0.0.1:{port}", ConnectionError, "at 'ray://127.0.0.1:{port}'"),
    ],
)
def test_a_ray_address_is_checked_before_ray_init(address, error, message, monkeypatch):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(sys.modules, "ray", _RayThatMustNotStart)
    with pytest.raises(error, match=re.escape(message.format(port=port))):
        connect_ray(address.format(port=port))
    monkeypatch.setenv("RAY_ADDRESS", address.format(port=port))
    with pytest.raises(error, match=re.escape(message.format(port=port))):
        connect_ray()


def test_a_ray_address_needs_the_ray_backend(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", _grid(tmp_path), "--ray-address", "auto", "--out", str(tmp_path / "o")])
    assert "ray_address is for backend='ray', got backend='local'" in capsys.readouterr().err
