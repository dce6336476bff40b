"""Learners from outside the package: the worked example of docs/extending.md
(examples/random_feedback_learner.py) registered in-process with ``register_learner`` and
installed as an entry point (a ``.dist-info`` folder on ``sys.path``, read by
``importlib.metadata`` as pip's installs are), listed by ``bpl list``, trained by ``bpl train``
(also in a fresh process) and by ``bpl sweep``'s worker processes; its update against an explicit
recursion by autograd; clear errors for a name clash, a class that breaks the contract and an
entry point that fails to load."""

import json
import os
import pathlib
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from agents import registry
from agents.bptt import BPTT
from agents.cli import main
from agents.experiments import parallel
from agents.no_sg import NoSG
from agents.registry import LEARNERS, PluginWarning, get_learner, load_plugins, register_learner
from agents.sequence_learner import SequenceLearner
from tests.agents.autograd_reference import (
    assert_all_close,
    learner_grads,
    make_data,
    randomise,
    replay_env,
    step_loss,
)
from tests.agents.influence_reference import step_derivatives

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPOSITORY / "examples"
DESCRIPTION = "random feedback with leaky eligibility traces"
ENTRY_POINTS = """\
[bp_lambda.learners]
random_feedback = random_feedback_learner:RandomFeedback
broken_import = demo_missing_module:Learner
not_a_learner = random_feedback_learner:argparse
bptt = random_feedback_learner:RandomFeedback
"""


@pytest.fixture
def example():
    """The example module, importable as ``random_feedback_learner``; the registry, sys.path and
    sys.modules as they were, after the test."""
    learners, path, modules = dict(LEARNERS), list(sys.path), set(sys.modules)
    sys.path.insert(0, str(EXAMPLES))
    import random_feedback_learner

    yield random_feedback_learner
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("random_feedback_learner", "demo_missing_module")):
            del sys.modules[name]
    LEARNERS.clear()
    LEARNERS.update(learners)
    load_plugins(reload=True)


def write_distribution(site: pathlib.Path, entry_points: str = ENTRY_POINTS) -> pathlib.Path:
    """An installed distribution ``demo-learners 0.1`` with these entry points, in ``site``."""
    info = site / "demo_learners-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-learners\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site


def listing(capsys, *args):
    assert main(["list", *args]) == 0
    return capsys.readouterr().out


# ------------------------------------------------------------------------ the worked example
def test_example_update_is_its_recursion_by_autograd(example):
    """e_t = decay e_{t-1} + (∂s_t/∂θ)_local on each unit's own row, grad θ[i] += (F δ_t)_i e_t[i],
    with (∂s_t/∂θ)_local by autograd and δ_t = d(batch-mean loss)/dŷ_t by autograd."""
    batch, steps, decay = 2, 5, 0.7
    inputs, targets, scored = make_data("ce", batch, steps, 2, 3, seed=12)
    learner = example.RandomFeedback(
        replay_env("ce", inputs, targets, scored, batch),
        hidden_size=3,
        trace_decay=decay,
        dtype="float64",
        seed=1,
    )
    randomise(learner.readout, seed=13)
    core, readout, feedback = learner.core, learner.readout, learner.feedback.weight
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    state = torch.zeros(batch, 3, dtype=torch.float64)
    traces = [torch.zeros(batch, *p.shape, dtype=torch.float64) for p in core.parameters()]
    want = [torch.zeros_like(p) for p in core.parameters()]
    for t in range(steps):
        _, local = step_derivatives(core, x[:, t], state)
        own_row = [torch.stack([i[:, r, r] for r in range(3)], dim=1) for i in local]
        traces = [decay * e + new for e, new in zip(traces, own_row, strict=True)]
        state = core(x[:, t], state).detach()
        prediction = readout(core.hidden(state)).detach().requires_grad_(True)
        loss = float(scored[t]) * step_loss("ce", prediction, y[:, t])
        (delta,) = torch.autograd.grad(loss.mean(), [prediction])
        signal = delta @ feedback.T
        want = [
            w + torch.einsum("bi,bi...->i...", signal, e) for w, e in zip(want, traces, strict=True)
        ]
    learner.learn(episodes=1)
    assert_all_close(learner_grads(learner)[0], want)
    assert all(g.abs().max() > 1e-4 for g in want)


def test_example_refuses_other_cores_and_bad_decays(example):
    with pytest.raises(ValueError, match=r"RandomFeedback needs core='rnn', got core='lstm'"):
        example.RandomFeedback("bpl/LineDraw-v0", core="lstm")
    with pytest.raises(ValueError, match=r"trace_decay must be a number in \[0, 1\], got 1.5"):
        example.RandomFeedback("bpl/LineDraw-v0", trace_decay=1.5)


def test_docs_show_the_example_learner_verbatim():
    docs = (REPOSITORY / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, flags=re.S)
    source = (EXAMPLES / "random_feedback_learner.py").read_text()
    assert any(
        "class RandomFeedback(SequenceLearner):" in block and block in source for block in blocks
    )


@pytest.mark.usefixtures("example")
def test_example_script_lists_and_trains(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(
        sys, "argv", ["random_feedback_learner.py", "--updates", "2", "--out", str(out)]
    )
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(EXAMPLES / "random_feedback_learner.py"), run_name="__main__")
    assert exit_status.value.code == 0
    printed = capsys.readouterr().out
    assert re.search(
        r"random_feedback\s+random feedback with leaky eligibility traces "
        r"\(RFLO-like, RNN core\) \[register_learner\]",
        printed,
    )
    assert re.search(r"--trace-decay +float, default 0.5", printed)
    assert json.loads((out / "run.json").read_text())["config"]["learner"] == "random_feedback"


# ------------------------------------------------------------------------ register_learner
def test_registered_in_process_it_is_listed_trained_and_resumed(example, tmp_path, capsys):
    register_learner("random_feedback", example.RandomFeedback, DESCRIPTION)
    out = listing(capsys)
    assert re.search(rf"random_feedback\s+{DESCRIPTION} \[register_learner\]", out)
    assert re.search(
        r"--trace-decay +float, default 0.5", listing(capsys, "--learner", "random_feedback")
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "bpl/SequentialDigits-v0",
                "--learner",
                "random_feedback",
                "--num-envs",
                "4",
                "--updates",
                "2",
                "--trace-decay",
                "0.25",
                "--hidden-size",
                "6",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["hyperparameters"] == {"trace_decay": 0.25, "hidden_size": 6}
    assert main(["train", "--resume", str(run), "--updates", "3", "--no-progress"]) == 0
    learner = example.RandomFeedback.load(run / "checkpoint.pt")
    assert (learner.trace_decay, learner.num_episodes) == (0.25, 3)
    assert learner.feedback.weight.shape == (6, 10)


def test_worker_initialiser_registers_what_the_parent_registered(example):
    register_learner("random_feedback", example.RandomFeedback, DESCRIPTION)
    registrations = registry.registered_in_process()
    assert registrations == [("random_feedback", example.RandomFeedback, DESCRIPTION)]
    del LEARNERS["random_feedback"]  # a fresh worker process knows only the built-in learners
    threads = torch.get_num_threads()
    try:
        parallel._init_worker(registrations)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert LEARNERS["random_feedback"] == registry.LearnerEntry(
        example.RandomFeedback, DESCRIPTION, "register_learner"
    )


@pytest.mark.slow
def test_sweep_worker_processes_know_in_process_learners(example, tmp_path):
    register_learner("random_feedback", example.RandomFeedback, DESCRIPTION)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "env": "bpl/LineDraw-v0",
                "env_kwargs": {"sequence_length": 3},
                "learner": "random_feedback",
                "num_envs": 2,
                "updates": 2,
                "hyperparameters": {"hidden_size": 3},
                "grid": {"trace_decay": [0.0, 0.9]},
                "seeds": 1,
            }
        )
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(grid), "--workers", "2", "--out", str(out), "--no-progress"]) == 0
    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert [run["name"] for run in runs] == [
        "LineDraw-v0_random_feedback_trace_decay=0_seed0",
        "LineDraw-v0_random_feedback_trace_decay=0.9_seed0",
    ]
    for run in runs:
        assert np.isfinite(run["metrics"]["final"]["train/loss"])


class Incomplete(SequenceLearner):
    """Implements no rule."""


class NoSeed(NoSG):
    """Its constructor does not take the arguments the runner sets."""

    def __init__(self, env, *, core: str = "rnn") -> None:
        super().__init__(env, core=core)


class EnvByKeyword(NoSG):
    """Takes env as a keyword only."""

    def __init__(self, *, env=None, **kwargs) -> None:
        super().__init__(env, **kwargs)


class Renamed(NoSG):
    """NoSG under another class name."""


class Unresolvable(NoSG):
    """Its annotation names nothing importable."""

    def __init__(self, env, *, width: "Undefined" = 1, **kwargs) -> None:  # noqa: F821
        self.width = width
        super().__init__(env, **kwargs)


@pytest.mark.parametrize(
    "args, error, message",
    [
        (
            ("bptt", NoSG, "x"),
            ValueError,
            r"a learner named 'bptt' is already registered \(agents.bptt.BPTT, from agents\)$",
        ),
        (("bptt", BPTT, "x"), ValueError, r"'bptt' is already registered"),
        ((3, NoSG, "x"), TypeError, r"name must be a str, got int"),
        (("My Rule", NoSG, "x"), ValueError, r"name must be lower-case .*got 'My Rule'"),
        (("mine", object(), "x"), TypeError, r"subclass of agents.base.BaseLearner.*got <object"),
        (
            ("mine", Incomplete, "x"),
            TypeError,
            r"test_plugins.Incomplete does not implement \['_learn_step'\]",
        ),
        (
            ("mine", NoSeed, "x"),
            TypeError,
            r"must accept the keyword argument\(s\) \['seed', 'verbose'\]",
        ),
        (("mine", EnvByKeyword, "x"), TypeError, r"must take `env` as its first positional"),
        (("mine", Unresolvable, "x"), TypeError, r"cannot be read \(NameError: .*Undefined"),
        (("mine", NoSG, ""), ValueError, r"description must be one non-empty line, got ''"),
        (("mine", NoSG, "two\nlines"), ValueError, r"description must be one non-empty line"),
        (("mine", NoSG, 3), TypeError, r"description must be a str, got int"),
    ],
)
@pytest.mark.usefixtures("example")
def test_register_learner_refuses_with_a_clear_error(args, error, message):
    with pytest.raises(error, match=message):
        register_learner(*args)
    assert "mine" not in LEARNERS and LEARNERS["bptt"].cls is BPTT


@pytest.mark.usefixtures("example")
def test_a_taken_name_is_replaced_only_on_request():
    register_learner("mine", NoSG, "first")
    register_learner("mine", NoSG, "same class again")
    with pytest.raises(
        ValueError,
        match=r"'mine' is already registered \(agents.no_sg.NoSG, "
        r"from register_learner\); pass replace=True",
    ):
        register_learner("mine", Renamed, "another class")
    register_learner("mine", Renamed, "replaced", replace=True)
    assert get_learner("mine") is Renamed and LEARNERS["mine"].description == "replaced"
    with pytest.raises(TypeError, match=r"replace must be a bool, got 'yes'"):
        register_learner("mine", NoSG, "x", replace="yes")


# ------------------------------------------------------------------------------ entry points
@pytest.mark.usefixtures("example")
def test_entry_points_register_installed_learners_and_report_broken_ones(tmp_path, capsys):
    sys.path[:0] = [str(write_distribution(tmp_path / "site")), str(EXAMPLES)]
    with pytest.warns(PluginWarning) as caught:
        errors = load_plugins(reload=True)
    assert sorted(errors) == ["bptt", "broken_import", "not_a_learner"]
    assert len(caught) == 3
    assert re.fullmatch(
        r"demo_missing_module:Learner \(from demo-learners 0.1\): import failed: "
        r"ModuleNotFoundError: No module named 'demo_missing_module'",
        errors["broken_import"],
    )
    assert re.search(
        r"subclass of agents.base.BaseLearner .*got <module 'argparse'", errors["not_a_learner"]
    )
    assert "'bptt' is already registered (agents.bptt.BPTT, from agents)" in errors["bptt"]
    entry = LEARNERS["random_feedback"]
    assert (entry.cls.__name__, entry.origin) == ("RandomFeedback", "demo-learners 0.1")
    assert entry.description == (
        "Random feedback with leaky eligibility traces (RFLO-like), for the RNN core."
    )
    assert get_learner("bptt") is BPTT  # the rest of the registry works as before
    out = listing(capsys)
    assert re.search(r"random_feedback\s+Random feedback .* \[demo-learners 0.1\]", out)
    assert "Learner entry points that failed to load (bp_lambda.learners):" in out
    assert re.search(
        r"broken_import\s+demo_missing_module:Learner \(from demo-learners 0.1\): "
        r"import failed",
        out,
    )
    with pytest.warns(PluginWarning):  # same site: the same errors, reported again
        load_plugins(reload=True)
    assert registry.plugin_errors() == errors


def test_an_installed_learner_trains_in_a_fresh_bpl_process(tmp_path):
    site = write_distribution(
        tmp_path / "site",
        "[bp_lambda.learners]\nrandom_feedback = random_feedback_learner:RandomFeedback\n",
    )
    run = tmp_path / "run"
    script = (
        "import sys; from agents.cli import main; main(['list']); sys.exit(main(['train', "
        "'bpl/LineDraw-v0', '--learner', 'random_feedback', '--updates', '2', "
        f"'--num-envs', '3', '--trace-decay', '0.1', '--out', {str(run)!r}, "
        "'--no-progress']))"
    )
    path = os.pathsep.join([str(site), str(EXAMPLES), str(REPOSITORY)])
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"random_feedback\s+Random feedback .* \[demo-learners 0.1\]", result.stdout)
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["config"]["learner"] == "random_feedback"
    assert recorded["learner_class"] == "RandomFeedback"
