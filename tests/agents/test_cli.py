"""The `bpl` command line, called in-process through ``agents.cli.main`` on tiny budgets."""

import functools
import json
import pathlib
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

import bpl_envs
from agents import cli
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT
from agents.cli import BENCHMARK_DIR, BENCHMARKS, main
from agents.experiments import EXPERIMENTS
from agents.experiments import training as training_module
from agents.experiments.building import env_arguments
from agents.experiments.config import preset_names
from agents.experiments.run_config import RunConfig
from agents.experiments.run_logs import read_progress
from agents.registry import LEARNERS
from agents.td_lambda import TDLambda
from bpl_envs.copy_repeat import CopyRepeatCurriculum

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORKTREE = pathlib.Path(__file__).resolve().parents[2]


def tiny_train(out, *extra):
    """A BP(λ) run on LineDraw small enough for a unit test (3 sequences of 10 tokens, H = 4)."""
    return [
        "train",
        "bpl/LineDraw-v0",
        "--num-envs",
        "3",
        "--hidden-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def error_of(capsys, argv) -> str:
    """Run main(argv), expecting a usage error (exit status 2); return what it printed."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------------ list
def test_list_names_every_env_learner_experiment_and_preset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*bpl_envs.ENV_IDS, *LEARNERS, *EXPERIMENTS, *preset_names()]:
        assert name in out
    for description in bpl_envs.ENV_IDS.values():
        assert description in out


def test_list_names_every_benchmark(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, (_, description) in BENCHMARKS.items():
        assert f"{name}  " in out and description in out


# ------------------------------------------------------------------------------- benchmark
def test_every_benchmark_names_a_script_of_the_checkout():
    for script, _ in BENCHMARKS.values():
        assert (BENCHMARK_DIR / script).is_file()


def test_benchmark_runs_the_script_with_its_arguments_and_returns_its_status(tmp_path):
    out = tmp_path / "envs.json"
    status = main(["benchmark", "envs", "--num-envs", "2", "--seconds", "0.02", "--out", str(out)])
    report = json.loads(out.read_text())
    fast_enough = all(row["speedup"] >= report["required_speedup"] for row in report["results"])
    assert status == (0 if fast_enough else 1)  # the script fails below its required speed-up
    assert [row["env_id"] for row in report["results"]] == [
        "bpl/CopyRepeat-v0",
        "bpl/SequentialDigits-v0",
        "bpl/AddingProblem-v0",
        "bpl/CharLM-v0",
        "bpl/MackeyGlass-v0",
    ]
    for row in report["results"]:
        assert row["num_envs"] == 2
        assert row["speedup"] == pytest.approx(
            row["native_tokens_per_s"] / row["sync_tokens_per_s"]
        )
    assert main(["benchmark", "envs", "--num-envs", "two"]) == 2  # the script's usage error


def test_benchmark_outside_a_checkout_says_where_the_scripts_are(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCHMARK_DIR", tmp_path / "benchmarks")
    error = error_of(capsys, ["benchmark", "memory"])
    assert str(tmp_path / "benchmarks" / "memory.py") in error and "make install" in error


def test_list_with_a_learner_shows_its_hyperparameters_and_defaults(capsys):
    assert main(["list", "--learner", "bp_lambda"]) == 0
    out = capsys.readouterr().out
    assert "--lam" in out and "--hidden-size" in out and "--lr-synth" in out
    assert "float, default 1.0" in out  # lam's annotation and default
    for name, description in [
        ("num-layers", "int, default 1"),
        ("recurrent-init", "str, default 'uniform'"),
        ("spectral-radius", "float | None, default None"),
    ]:
        assert re.search(rf"--{name} +{re.escape(description)}\n", out), name
    assert "choose one of" in error_of(capsys, ["list", "--learner", "bp_lamda"])


def test_list_shows_the_replay_arguments(capsys):
    assert main(["list", "--learner", "bp_lambda"]) == 0
    out = capsys.readouterr().out
    assert "--synth-update" in out and "str, default 'trace'" in out
    assert "--replay-window" in out and "int | None, default None" in out


# ----------------------------------------------------------------------------------- train
def test_train_runs_the_replay_with_a_window_and_logs_the_clip_fraction(tmp_path):
    out = tmp_path / "replay"
    assert (
        main(
            tiny_train(
                out,
                "--updates",
                "3",
                "--synth-update",
                "replay",
                "--replay-window",
                "3",
                "--lr-synth",
                "1e-2",
            )
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["hyperparameters"] == {
        "hidden_size": 4,
        "synth_update": "replay",
        "replay_window": 3,
        "lr_synth": 1e-2,
    }
    fraction = read_progress(out / "progress.csv")["train/synth_clip_fraction"]
    assert len(fraction) == 3 and ((0 <= fraction) & (fraction <= 1)).all()
    loaded = BPLambda.load(out / "checkpoint.pt")
    assert (loaded.synth_update, loaded.replay_window) == ("replay", 3)


def test_train_refuses_a_bad_replay_window(tmp_path, capsys):
    error = error_of(
        capsys,
        tiny_train(
            tmp_path / "bad", "--updates", "1", "--synth-update", "replay", "--replay-window", "0"
        ),
    )
    assert "replay_window must be None or an int >= 1, got 0" in error


def test_train_help_states_the_thread_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 1: the models here are small" in " ".join(capsys.readouterr().out.split())


def test_train_writes_logs_checkpoint_plot_and_the_run_config(tmp_path):
    out = tmp_path / "run"
    assert (
        main(tiny_train(out, "--updates", "4", "--lam", "0.5", "--seed", "3", "--lr-synth=1e-3"))
        == 0
    )

    progress = read_progress(out / "progress.csv")
    np.testing.assert_array_equal(progress["time/total_timesteps"], [30, 60, 90, 120])
    assert np.isfinite(progress["train/loss"]).all()
    assert any(p.stat().st_size > 0 for p in out.glob("events.out.tfevents.*"))
    assert (out / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["num_episodes"] == 4
    assert run["config"]["hyperparameters"] == {"hidden_size": 4, "lam": 0.5, "lr_synth": 1e-3}
    assert yaml.safe_load((out / "config.yaml").read_text()) == run["config"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["train/loss"] == pytest.approx(progress["train/loss"][-1])

    # The run is the library's: the same learner built and trained by hand ends identically.
    by_hand = BPLambda(
        gym.make_vec("bpl/LineDraw-v0", num_envs=3),
        hidden_size=4,
        lam=0.5,
        lr_synth=1e-3,
        n_envs=3,
        seed=3,
    )
    by_hand.learn(episodes=4)
    loaded = BPLambda.load(out / "checkpoint.pt")
    assert loaded.num_episodes == 4 and loaded.lam == 0.5 and loaded.hidden_size == 4
    for name in ("core", "readout", "synthesiser"):
        for p, q in zip(
            getattr(loaded, name).parameters(), getattr(by_hand, name).parameters(), strict=True
        ):
            assert torch.equal(p, q)


def test_train_runs_td_lambda_on_the_random_walk(tmp_path):
    out = tmp_path / "walk"
    assert (
        main(
            [
                "train",
                "bpl/RandomWalk-v0",
                "--learner",
                "td_lambda",
                "--lam",
                "0.8",
                "--alpha",
                "0.3",
                "--trace",
                "true_online",
                "--updates",
                "10",
                "--seed",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    by_hand = TDLambda(
        gym.make("bpl/RandomWalk-v0"), lam=0.8, alpha=0.3, trace="true_online", seed=0
    ).learn(episodes=10)
    loaded = TDLambda.load(out / "checkpoint.pt")
    assert loaded.num_episodes == 10
    np.testing.assert_array_equal(loaded.values, by_hand.values)
    assert np.abs(by_hand.values).max() > 0  # it learned something


def test_train_scores_envs_with_a_test_split_on_it(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "bpl/SequentialDigits-v0",
                "--learner",
                "bptt",
                "--num-envs",
                "4",
                "--hidden-size",
                "3",
                "--updates",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    test = json.loads((out / "metrics.json").read_text())["test"]
    learner = BPTT.load(out / "checkpoint.pt")
    inputs, labels = gym.make("bpl/SequentialDigits-v0", split="test").unwrapped.dataset()
    state = None
    for t in range(inputs.shape[1]):
        logits, state = learner.predict(inputs[:, t], state)
    assert test["test/accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels), abs=1e-12)
    log_softmax = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    assert test["test/loss"] == pytest.approx(
        -log_softmax[np.arange(len(labels)), labels].mean().item(), rel=1e-5
    )


class InterruptAfter(BaseCallback):
    """Raise KeyboardInterrupt at the first step of batch ``batches + 1`` (mid-sequence)."""

    def __init__(self, batches: int):
        super().__init__()
        self.batches, self.armed = batches, False

    def _on_step(self) -> bool:
        # num_episodes reaches `batches` on that batch's last step; interrupt on the next one
        if self.armed:
            raise KeyboardInterrupt
        self.armed = self.model.num_episodes >= self.batches
        return True


COPY_RUN = [
    "train",
    "bpl/CopyRepeat-v0",
    "--num-envs",
    "2",
    "--core",
    "lstm",
    "--hidden-size",
    "3",
    "--lr-synth",
    "1e-3",
    "--updates",
    "6",
    "--no-progress",
    "--env-arg",
    "curriculum={threshold_bits: 50.0}",
]  # 50 bits: advance every batch


def _parameters(path):
    learner = BPLambda.load(path)
    return [
        p.detach().clone()
        for m in (learner.core, learner.readout, learner.synthesiser)
        for p in m.parameters()
    ]


@pytest.mark.parametrize("env_args", [[], ["--env-arg", "stream=true"]], ids=["plain", "stream"])
def test_ctrl_c_leaves_a_checkpoint_and_resuming_equals_the_uninterrupted_run(
    env_args, tmp_path, monkeypatch, capsys
):
    """Copy-repeat with a curriculum that advances every batch: the resumed run must restore
    the env's random state and the curriculum as well as the learner (also when the env
    streams, having drawn the next sequences on the step that ended the last batch)."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert main([*COPY_RUN, *env_args, "--out", str(straight)]) == 0

    interrupting = functools.partial(training_module.train, callbacks=[InterruptAfter(3)])
    monkeypatch.setattr(cli, "train", interrupting)  # the name the CLI calls
    assert main([*COPY_RUN, *env_args, "--out", str(broken)]) == 130
    assert f"bpl train --resume {broken}" in capsys.readouterr().err
    run = json.loads((broken / "run.json").read_text())
    assert run["status"] == "interrupted" and run["num_episodes"] == 3
    half = BPLambda.load(broken / "checkpoint.pt")  # loadable, at the last complete batch
    assert half.num_episodes == 3
    assert len(read_progress(broken / "progress.csv")["train/loss"]) == 3  # readable log

    monkeypatch.undo()
    assert main(["train", "--resume", str(broken), "--no-progress"]) == 0
    for p, q in zip(
        _parameters(broken / "checkpoint.pt"), _parameters(straight / "checkpoint.pt"), strict=True
    ):
        assert torch.equal(p, q)
    a, b = read_progress(straight / "progress.csv"), read_progress(broken / "progress.csv")
    np.testing.assert_array_equal(a["train/loss"], b["train/loss"])
    np.testing.assert_array_equal(b["train/sequence_length"], [5, 7, 9, 12, 15, 19])  # §5
    assert json.loads((broken / "run.json").read_text())["status"] == "finished"


class InterruptAtBatchEnd(BaseCallback):
    """Raise KeyboardInterrupt as batch ``batch`` ends, before the learner logs it."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch = batch

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.num_episodes == self.batch:
            raise KeyboardInterrupt


def test_ctrl_c_between_a_batch_and_its_log_line_resumes_from_the_logged_batch(
    tmp_path, monkeypatch
):
    """The checkpoint never runs ahead of progress.csv: interrupted as batch 3 ends, before its
    row is written, the run keeps batch 2 and resumes to the uninterrupted log."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert main([*COPY_RUN, "--out", str(straight)]) == 0
    interrupting = functools.partial(training_module.train, callbacks=[InterruptAtBatchEnd(3)])
    monkeypatch.setattr(cli, "train", interrupting)  # the name the CLI calls
    assert main([*COPY_RUN, "--out", str(broken)]) == 130
    assert BPLambda.load(broken / "checkpoint.pt").num_episodes == 2
    assert len(read_progress(broken / "progress.csv")["train/loss"]) == 2
    assert json.loads((broken / "run.json").read_text())["num_episodes"] == 2
    monkeypatch.undo()
    assert main(["train", "--resume", str(broken), "--no-progress"]) == 0
    for p, q in zip(
        _parameters(broken / "checkpoint.pt"), _parameters(straight / "checkpoint.pt"), strict=True
    ):
        assert torch.equal(p, q)
    a, b = read_progress(straight / "progress.csv"), read_progress(broken / "progress.csv")
    np.testing.assert_array_equal(a["train/loss"], b["train/loss"])


def test_save_every_checkpoints_at_batch_boundaries_once_the_batch_is_logged(tmp_path):
    """--save-every 50 with batches of 30 steps: the first batch ending at or past 50, 100, 150
    steps is saved (batches 2, 4 and 5), and the last batch at the end. A checkpoint is written
    when the next batch starts, after its own batch's progress.csv row: a run killed at any
    moment resumes with a complete log."""
    out = tmp_path / "run"
    seen = []

    class Spy(BaseCallback):
        def _on_step(self):
            return True

        def _on_rollout_start(self):
            path = out / "checkpoint.pt"
            if path.exists():
                rows = len(read_progress(out / "progress.csv")["train/loss"])
                seen.append((BPLambda.load(path).num_episodes, rows))

    config = RunConfig(
        env="bpl/LineDraw-v0",
        learner="bp_lambda",
        num_envs=3,
        hyperparameters={"hidden_size": 4},
        updates=5,
        save_every=50,
    )
    training_module.train(config, out, progress=False, stdout=False, callbacks=[Spy()])
    # (batches in checkpoint.pt, rows in progress.csv) when batches 3, 4 and 5 start
    assert seen == [(2, 2), (2, 3), (4, 4)]
    assert BPLambda.load(out / "checkpoint.pt").num_episodes == 5


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "bpl/LineDrawing-v0", "--updates", "1"], ["unknown env id", "bpl/LineDraw-v0"]),
        (
            ["train", "bpl/LineDraw-v0", "--learner", "bp_lamda", "--updates", "1"],
            ["unknown learner", "bp_lambda", "bptt"],
        ),
        (
            ["train", "bpl/LineDraw-v0", "--lamda", "0.5", "--updates", "1"],
            ["unknown hyper-parameter", "lamda", "'lam'", "'hidden_size'"],
        ),
        (
            ["train", "bpl/LineDraw-v0", "--lam", "high", "--updates", "1"],
            ["'lam'", "float", "high"],
        ),
        (
            ["train", "bpl/LineDraw-v0", "--hidden-size", "2.5", "--updates", "1"],
            ["'hidden_size'", "int", "2.5"],
        ),
        (
            ["train", "bpl/LineDraw-v0", "--env-arg", "length=3", "--updates", "1"],
            ["unknown env argument", "'sequence_length'"],
        ),
        (
            ["train", "bpl/LineDraw-v0", "--n-envs", "3", "--updates", "1"],
            ["unknown hyper-parameter", "--num-envs"],
        ),
        (["train", "bpl/LineDraw-v0"], ["--steps N", "--updates N"]),
        (["train", "--updates", "1"], ["ENV_ID"]),
        (["train", "--resume", "somewhere", "--lam", "0.5"], ["--resume", "--lam"]),
        (["reproduce", "toys"], ["unknown experiment", "toy", "copy-repeat"]),
        (["train", "--config", "toyy", "--updates", "1"], ["toy_quick"]),
    ],
)
def test_mistakes_stop_before_anything_runs_and_list_the_choices(
    argv, expected, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # default output folders would land here
    message = error_of(capsys, [*argv, "--no-progress"] if argv[0] == "train" else argv)
    for text in expected:
        assert text in message
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_an_existing_output_folder_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_train(out, "--updates", "1")) == 0
    assert "--force" in error_of(capsys, tiny_train(out, "--updates", "2"))
    assert json.loads((out / "run.json").read_text())["num_episodes"] == 1
    (out / "checkpoint.pt.tmp").write_bytes(b"left by a crash")
    assert main(tiny_train(out, "--updates", "2", "--force")) == 0
    assert json.loads((out / "run.json").read_text())["num_episodes"] == 2
    assert not (out / "checkpoint.pt.tmp").exists()


def test_train_from_a_config_file_with_flags_overriding_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "bpl/LineDraw-v0",
                "env_kwargs": {"sequence_length": 4},
                "learner": "bp_lambda",
                "num_envs": 2,
                "updates": 3,
                "hyperparameters": {"hidden_size": 3, "lam": 0.25},
            }
        )
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--lam",
                "0.75",
                "--updates",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())["config"]
    assert run["hyperparameters"] == {"hidden_size": 3, "lam": 0.75}
    assert run["updates"] == 2 and run["env_kwargs"] == {"sequence_length": 4}
    np.testing.assert_array_equal(
        read_progress(out / "progress.csv")["time/total_timesteps"], [8, 16]
    )


def test_another_learner_on_a_config_keeps_the_hyperparameters_it_takes(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "bpl/LineDraw-v0",
                "learner": "bp_lambda",
                "num_envs": 2,
                "updates": 1,
                "hyperparameters": {"hidden_size": 3, "lam": 0.25},
            }
        )
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--learner",
                "bptt",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "bptt does not take ['lam']" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["hyperparameters"] == {"hidden_size": 3}
    assert run["learner_class"] == "BPTT"


def test_the_curriculum_env_argument_builds_a_curriculum():
    kwargs = env_arguments(
        "bpl/CopyRepeat-v0", {"curriculum": {"threshold_bits": "0.5"}, "max_repeats": 5}
    )
    assert isinstance(kwargs["curriculum"], CopyRepeatCurriculum)
    assert kwargs["curriculum"].threshold_bits == 0.5 and kwargs["max_repeats"] == 5
    with pytest.raises(ValueError, match="'repeats'"):
        env_arguments("bpl/CopyRepeat-v0", {"curriculum": {"repeat": 2}})


# ------------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", ["list", "train", "reproduce", "compare", "sweep"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: bpl {command}" in capsys.readouterr().out


def test_python_m_agents_cli_runs_as_a_script():
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "reproduce", "--help"],
        cwd=WORKTREE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: bpl reproduce" in done.stdout and "hours" in done.stdout
