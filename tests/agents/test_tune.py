"""``bpl tune``: the per-batch reports and the objective against a run by hand, pruning against
the median of the stored values, resuming after Ctrl-C, parallel workers and bad tune files."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import gymnasium as gym
import numpy as np
import optuna
import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents import BPLambda
from agents.cli import main
from agents.experiments import tune as tune_module
from agents.experiments.output import OutputExistsError
from agents.experiments.tune import TuneConfig, run_tune

BASE = {
    "env": "bpl/LineDraw-v0",
    "env_kwargs": {"sequence_length": 3},
    "learner": "bp_lambda",
    "num_envs": 2,
    "updates": 12,
    "seed": 3,
    "hyperparameters": {"hidden_size": 3, "lr_core": 0.05, "lr_readout": 0.05},
    "search": {"lam": {"uniform": [0.0, 1.0]}, "lr_synth": {"log_uniform": ["1e-4", 0.1]}},
    "pruner": "none",
}


def write(tmp_path, **changes):
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return str(path)


def count_completed_read_only(database):
    """Completed trials in a study another process may still be creating (0 until it exists).

    A read-only SQLite connection: opening the study through Optuna would create its tables,
    racing the ``bpl tune`` process that is creating them.
    """
    if not database.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)) as db:
            return db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # no tables yet, or locked by the schema creation
        return 0


def load(out):
    """The study in ``out``, read while a search may be writing it (waiting for its lock)."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{out / 'study.db'}", engine_kwargs={"connect_args": {"timeout": 60}}
    )
    return optuna.load_study(study_name="bpl_tune", storage=storage)


class LossPerBatch(BaseCallback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        self.losses.append(self.model.logger.name_to_value["train/loss"])


def test_reports_and_objective_equal_a_run_by_hand(tmp_path):
    out = tmp_path / "out"
    results = run_tune(write(tmp_path), out, trials=2, progress=False)
    study = load(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for trial in study.trials:
        env = gym.make_vec("bpl/LineDraw-v0", num_envs=2, sequence_length=3)
        learner = BPLambda(
            env, hidden_size=3, lr_core=0.05, lr_readout=0.05, n_envs=2, seed=3, **trial.params
        )
        record = LossPerBatch()
        learner.learn(episodes=12, callback=record)
        losses = np.array(record.losses)
        tails = [losses[n - math.ceil(0.1 * n) : n].mean() for n in range(1, 13)]
        assert sorted(trial.intermediate_values) == list(range(1, 13))
        np.testing.assert_allclose(
            [trial.intermediate_values[n] for n in range(1, 13)], tails, rtol=1e-12
        )
        assert trial.value == pytest.approx(losses[-2:].mean(), rel=1e-12)  # ceil(1.2) = 2
        assert 0 <= trial.params["lam"] <= 1 and 1e-4 <= trial.params["lr_synth"] <= 0.1
    best = min(study.trials, key=lambda t: t.value)
    assert results["best"]["number"] == best.number and results["best"]["value"] == best.value
    assert [row["number"] for row in results["trials"]] == sorted(
        [0, 1], key=lambda n: study.trials[n].value
    )
    assert json.loads((out / "results.json").read_text())["counts"]["complete"] == 2
    assert (
        "| trial | state | train/loss | lam | lr_synth | batches |"
        in (out / "results.md").read_text()
    )
    assert (out / "optimization_history.png").is_file()
    assert (out / "param_importances.png").is_file()


def test_the_median_pruner_stops_exactly_the_trials_worse_than_the_median(tmp_path):
    out = tmp_path / "out"
    config = write(
        tmp_path,
        pruner={"median": {"n_startup_trials": 1}},
        search={
            "lr_synth": {"log_uniform": [1.0e-4, 1.0]},
            "lr_core": {"log_uniform": [1.0e-3, 0.3]},
        },
        hyperparameters={"hidden_size": 3},
    )
    run_tune(config, out, trials=6, progress=False)
    trials = load(out).trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "expected the median pruner to stop some of these trials"
    for trial in trials:
        earlier = [t for t in trials[: trial.number] if t.state.name == "COMPLETE"]
        steps = sorted(trial.intermediate_values)
        for step in steps:
            if not earlier:
                continue
            median = np.median([t.intermediate_values[step] for t in earlier])
            worse = trial.intermediate_values[step] > median
            assert worse == (trial.state.name == "PRUNED" and step == steps[-1]), (
                trial.number,
                step,
            )
        if trial.state.name == "PRUNED":
            assert len(steps) < 12
        else:
            assert len(steps) == 12


def test_interrupted_search_resumes_without_losing_finished_trials(tmp_path, monkeypatch):
    out = tmp_path / "out"
    config = write(tmp_path)
    calls = []
    real_train = tune_module.train_in_memory

    def interrupted_on_the_third_trial(run, callbacks):
        calls.append(run.hyperparameters)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(run, callbacks=callbacks)

    monkeypatch.setattr(tune_module, "train_in_memory", interrupted_on_the_third_trial)
    with pytest.raises(KeyboardInterrupt):
        run_tune(config, out, trials=4, progress=False)
    before = load(out).trials
    assert [t.state.name for t in before] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert json.loads((out / "results.json").read_text())["counts"]["complete"] == 2

    results = run_tune(config, out, trials=4, progress=False)
    after = load(out).trials
    for old, new in zip(before[:2], after[:2], strict=True):
        assert (new.state.name, new.params, new.value) == ("COMPLETE", old.params, old.value)
    assert after[3].user_attrs["retry_of"] == 2 and after[3].params == before[2].params
    assert [t.state.name for t in after] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert results["counts"] == {"complete": 4, "pruned": 0, "fail": 1, "waiting": 0, "running": 0}
    assert len(calls) == 5  # a finished study is not run again:
    assert run_tune(config, out, trials=4, progress=False)["counts"]["complete"] == 4
    assert len(calls) == 5


def test_ctrl_c_on_the_command_line_keeps_the_finished_trials(tmp_path):
    """A real SIGINT to `bpl tune` in the middle of a trial, then the same command resumes."""
    out = tmp_path / "out"
    config = write(tmp_path, updates=20)
    command = [
        sys.executable,
        "-m",
        "agents.cli",
        "tune",
        config,
        "--trials",
        "30",
        "--out",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    completed = 0
    while time.monotonic() < deadline and completed < 2:
        time.sleep(0.5)
        completed = count_completed_read_only(out / "study.db")
    assert completed >= 2, process.communicate(timeout=60)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 130, error
    assert "Resume with the same command" in error
    kept = {t.number: (t.params, t.value) for t in load(out).trials if t.state.name == "COMPLETE"}
    assert len(kept) >= 2

    total = len(kept) + 1
    assert main(["tune", config, "--trials", str(total), "--out", str(out), "--no-progress"]) == 0
    resumed = load(out).trials
    for number, (params, value) in kept.items():
        assert (resumed[number].params, resumed[number].value) == (params, value)
    assert sum(t.state.name == "COMPLETE" for t in resumed) == total


def test_two_worker_processes_share_the_study(tmp_path):
    out = tmp_path / "out"
    results = run_tune(write(tmp_path, updates=2), out, trials=2, workers=2, progress=False)
    trials = load(out).trials
    assert len(trials) == 2 and results["counts"]["complete"] == 2
    assert trials[0].params != trials[1].params  # the workers' samplers are seeded differently


def test_output_folder_rules(tmp_path):
    out = tmp_path / "out"
    run_tune(write(tmp_path, updates=2), out, trials=1, progress=False)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**BASE, "updates": 3}))
    with pytest.raises(OutputExistsError, match="holds a search of a different tune file"):
        run_tune(str(other), out, trials=1, progress=False)
    run_tune(str(other), out, trials=1, force=True, progress=False)
    assert load(out).trials[0].intermediate_values.keys() == {1, 2, 3}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already holds files"):
        run_tune(str(other), busy, trials=1, progress=False)
    assert (busy / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"search": {"lam": [0, 1]}}, "search.lam must be a one-key mapping"),
        ({"search": {"lam": {"normal": [0, 1]}}}, "search.lam: unknown distribution 'normal'"),
        ({"search": {"lam": {"uniform": [1, 0]}}}, r"search.lam: uniform needs finite low < high"),
        ({"search": {"lam": {"uniform": [0]}}}, r"search.lam: uniform needs \[low, high\]"),
        ({"search": {"lam": {"uniform": ["a", 1]}}}, "search.lam: uniform needs two floats"),
        (
            {"search": {"lr_synth": {"log_uniform": [0, 0.1]}}},
            "search.lr_synth: log_uniform needs 0 < low < high",
        ),
        (
            {"search": {"hidden_size": {"uniform": [2, 8]}}, "hyperparameters": {}},
            "hyper-parameter 'hidden_size' of .*search.hidden_size expects int, got 2.0",
        ),
        ({"search": {"core": {"categorical": []}}}, "search.core: categorical needs a non-empty"),
        (
            {"search": {"core": {"categorical": ["rnn", "elman"]}}},
            "search.core: 'elman' is refused by the learner",
        ),
        ({"search": {"lam": {"uniform": [0, 1.5]}}}, "search.lam: 1.5 is refused by the learner"),
        (
            {"search": {"lamda": {"uniform": [0, 1]}}},
            "search.lamda: BPLambda has no hyper-parameter 'lamda'; valid: .*'lam'",
        ),
        (
            {"search": {"hidden_size": {"int": [2, 4]}}},
            "search.hidden_size is also fixed under hyperparameters",
        ),
        ({"search": {}}, "search must be a non-empty mapping"),
        ({"metric": "loss"}, "metric must be a per-batch metric"),
        ({"direction": "down"}, r"direction must be one of \['minimize', 'maximize'\]"),
        ({"pruner": "hyperband"}, "pruner: unknown pruner 'hyperband'; allowed: "),
        (
            {"pruner": {"median": {"warmup": 3}}},
            r"pruner.median: unknown option\(s\) \['warmup'\]; valid: .*'n_warmup_steps'",
        ),
        ({"sampler": {"tpe": {"seed": 1}}}, r"sampler.tpe: unknown option\(s\) \['seed'\]"),
        ({"trials": 5}, r"unknown key\(s\) \['trials'\]"),
    ],
)
def test_malformed_tune_files_name_the_key(tmp_path, changes, message, capsys):
    config = write(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        TuneConfig.from_mapping(yaml.safe_load(open(config)), config)
    with pytest.raises(SystemExit) as stop:
        main(["tune", config, "--trials", "1", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "bpl tune: error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_packaged_example_tunes_bp_lambda_on_digits():
    config = TuneConfig.from_mapping(tune_module.load_config("tune_digits"), "tune_digits")
    assert config.run.learner == "bp_lambda" and config.run.env == "bpl/SequentialDigits-v0"
    assert {entry.name for entry in config.ranges} == {"lam", "lr_synth", "sg_weight"}
