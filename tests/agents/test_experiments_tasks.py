"""`bpl reproduce adding|charlm|mackey-glass` on tiny budgets: each held-out score against the
same learner trained and scored by hand, the reference levels, and the presets."""

import copy
import json
import math
import pathlib

import gymnasium as gym
import numpy as np
import pytest
import yaml

import bpl_envs  # noqa: F401  (registers the ids)
from agents import BPTT, NoSG
from agents.cli import main
from agents.experiments.adding import TEST_SEED, TEST_SEQUENCES
from agents.experiments.comparison import comparison_runs
from agents.experiments.config import load_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASK_PRESETS = ["adding", "charlm", "mackey_glass"]


def tiny(name: str, tmp_path: pathlib.Path, learners: list[str], **env_kwargs) -> str:
    """The quick preset ``name`` with 2 updates of 4 sequences, H = 3 and only ``learners``."""
    config = copy.deepcopy(load_config(f"{name}_quick"))
    config.update(updates=2, num_envs=4)
    config["env_kwargs"].update(env_kwargs)
    config["hyperparameters"]["hidden_size"] = 3
    every = config["experiment"]["learners"]
    config["experiment"]["learners"] = {label: every[label] for label in learners}
    path = tmp_path / f"{name}_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def reproduce(tmp_path, name: str, config: str) -> dict:
    out = tmp_path / "out"
    argv = ["reproduce", name, "--config", config, "--out", str(out), "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["seeds"] == [0]
    table = (out / "results.md").read_text()
    assert sum(line.startswith("|---") for line in table.splitlines()) == 1
    for figure in result["figures"]:
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC
    return result


def predictions_by_hand(learner, inputs: np.ndarray) -> np.ndarray:
    """Every sequence at once, token by token: predictions float64 (N, T, n_out)."""
    state, outputs = None, []
    for t in range(inputs.shape[1]):
        prediction, state = learner.predict(inputs[:, t], state)
        outputs.append(prediction)
    return np.stack(outputs, axis=1).astype(np.float64)


def hyper(result, *names):
    return {name: result["config"]["hyperparameters"][name] for name in names}


def test_reproduce_adding_scores_the_fixed_test_set(tmp_path):
    config = tiny(tmp_path=tmp_path, name="adding", learners=["BPTT", "BP(0) stream, per step"])
    result = reproduce(tmp_path, "adding", config)
    assert result["references"] == {"chance_mse": 1 / 6}
    rows = {row["label"]: row for row in result["results"]}
    assert rows["BP(0) stream, per step"]["env_kwargs"] == {"sequence_length": 50, "stream": True}
    assert rows["BP(0) stream, per step"]["hyperparameters"]["update"] == "step"
    assert len(rows["BPTT"]["train_curve"]) == 2
    learner = BPTT(
        gym.make_vec("bpl/AddingProblem-v0", num_envs=4, sequence_length=50),
        n_envs=4,
        seed=0,
        **hyper(result, "core", "hidden_size", "lr_core", "lr_readout"),
    ).learn(episodes=2)
    inputs, targets, _ = gym.make("bpl/AddingProblem-v0").unwrapped.sample(
        TEST_SEQUENCES, TEST_SEED
    )
    last = predictions_by_hand(learner, inputs)[:, -1, 0]
    mse = float(np.mean((last - targets[:, -1, 0].astype(np.float64)) ** 2))
    assert rows["BPTT"]["test"]["values"][0] == pytest.approx(mse, rel=1e-5)


def test_reproduce_charlm_reports_bits_per_character_against_the_unigram_entropy(tmp_path):
    config = tiny(tmp_path=tmp_path, name="charlm", learners=["BPTT"], sequence_length=10)
    result = reproduce(tmp_path, "charlm", config)
    env = gym.make("bpl/CharLM-v0", sequence_length=10, split="test")
    entropy = env.unwrapped.unigram_entropy_bits
    assert result["references"] == {"unigram_entropy_bits": entropy}
    assert f"{entropy:.3f}" in result["table"]
    learner = BPTT(
        gym.make_vec("bpl/CharLM-v0", num_envs=4, sequence_length=10),
        n_envs=4,
        seed=0,
        **hyper(result, "core", "hidden_size", "lr_core", "lr_readout"),
    ).learn(episodes=2)
    inputs, targets, _ = env.unwrapped.windows()
    logits = predictions_by_hand(learner, inputs)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    bits = float(-(targets * log_softmax).sum(-1).mean() / math.log(2))
    assert result["results"][0]["test"]["values"][0] == pytest.approx(bits, rel=1e-5)


def test_reproduce_mackey_glass_scores_the_test_split_next_to_persistence(tmp_path):
    config = tiny(tmp_path=tmp_path, name="mackey_glass", learners=["NoSG"], sequence_length=10)
    result = reproduce(tmp_path, "mackey-glass", config)
    inputs, targets, _ = gym.make(
        "bpl/MackeyGlass-v0", sequence_length=10, split="test"
    ).unwrapped.windows()
    clean = targets.astype(np.float64)
    assert result["references"]["mean_mse"] == pytest.approx(clean.var(), rel=1e-12)
    assert result["references"]["persistence_mse"] == pytest.approx(
        np.mean((clean - inputs) ** 2), rel=1e-12
    )
    learner = NoSG(
        gym.make_vec("bpl/MackeyGlass-v0", num_envs=4, sequence_length=10),
        n_envs=4,
        seed=0,
        **hyper(result, "core", "hidden_size", "lr_core", "lr_readout"),
    ).learn(episodes=2)
    mse = float(np.mean((predictions_by_hand(learner, inputs) - clean) ** 2))
    assert result["results"][0]["test"]["values"][0] == pytest.approx(mse, rel=1e-5)


@pytest.mark.parametrize("name", TASK_PRESETS)
def test_quick_and_full_presets_compare_the_same_learners(name):
    full, quick = load_config(name), load_config(f"{name}_quick")
    assert quick["experiment"]["learners"] == full["experiment"]["learners"]
    assert quick["env"] == full["env"] and quick["hyperparameters"] == full["hyperparameters"]
    labels = [run.learner for run in comparison_runs(quick).values()]
    assert sorted(set(labels)) == ["bp_lambda", "bptt", "dni", "nosg", "tbptt"]
    truncations = [
        run.hyperparameters["n"]
        for run in comparison_runs(quick).values()
        if run.learner == "tbptt"
    ]
    assert len(truncations) == 2
    stream = [run for run in comparison_runs(quick).values() if run.env_kwargs.get("stream")]
    assert len(stream) == 1 and stream[0].hyperparameters["update"] == "step"
    assert stream[0].learner == "bp_lambda"


def test_a_learner_entry_may_change_env_arguments_and_they_are_checked():
    config = copy.deepcopy(load_config("adding_quick"))
    learners = config["experiment"]["learners"]
    learners["BPTT"] = {"learner": "bptt", "env_kwargs": {"sequence_length": 9}}
    runs = comparison_runs(config)
    assert runs["BPTT"].env_kwargs == {"sequence_length": 9}
    assert runs["NoSG"].env_kwargs == {"sequence_length": 50}
    learners["BPTT"] = {"learner": "bptt", "env_kwargs": {"length": 9}}
    with pytest.raises(ValueError, match=r"unknown env argument\(s\) \['length'\]"):
        comparison_runs(config)
    learners["BPTT"] = {"learner": "bptt", "env": "bpl/CharLM-v0"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['env'\]"):
        comparison_runs(config)


def test_an_experiment_refuses_a_preset_for_another_task(tmp_path, capsys):
    config = copy.deepcopy(load_config("adding_quick"))
    config["env"] = "bpl/LineDraw-v0"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["reproduce", "adding", "--config", str(path), "--out", str(out), "--no-progress"])
    assert "scores AddingProblemEnv runs, but the preset's env 'bpl/LineDraw-v0'" in (
        capsys.readouterr().err
    )
    assert not out.exists()
