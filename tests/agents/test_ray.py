"""The Ray backend on a real local Ray instance: a sweep on Ray equals the local backend cell for
cell, and an address where no cluster listens is refused by name.

Marked ``ray`` and run by ``make test-ray`` (its own CI step, which installs the ``ray`` extra
first); skipped where Ray is not installed.
"""

import json
import socket

import pytest
import torch
import yaml

from agents import get_learner
from agents.cli import main

ray = pytest.importorskip("ray", reason="the ray extra: pip install 'bp-lambda[ray]'")
pytestmark = pytest.mark.ray

GRID = {
    "env": "bpl/LineDraw-v0",
    "env_kwargs": {"sequence_length": 3},
    "learner": ["bp_lambda", "bptt"],
    "num_envs": 2,
    "updates": 3,
    "hyperparameters": {"hidden_size": 3, "lr_core": 0.01},
    "grid": {"lam": [0.0, 1.0]},
    "seeds": 2,
}


def closed_port() -> int:
    """A local port where nothing listens (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_address_where_no_cluster_listens_is_refused_by_name(tmp_path, capsys):
    assert not ray.is_initialized()
    address = f"127.0.0.1:{closed_port()}"
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "sweep",
                str(grid),
                "--backend",
                "ray",
                "--ray-address",
                address,
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at '{address}'" in error and "ray start --head" in error
    assert not (tmp_path / "out").exists() and not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.usefixtures("local_ray")
def test_a_sweep_on_ray_equals_the_local_backend_cell_for_cell(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    outs = {backend: tmp_path / backend for backend in ("ray", "local")}
    assert (
        main(["sweep", str(grid), "--backend", "ray", "--out", str(outs["ray"]), "--no-progress"])
        == 0
    )
    assert (
        main(["sweep", str(grid), "--workers", "2", "--out", str(outs["local"]), "--no-progress"])
        == 0
    )
    summaries = {b: json.loads((out / "summary.json").read_text()) for b, out in outs.items()}
    assert summaries["ray"]["backend"] == "ray" and summaries["local"]["backend"] == "local"
    ray_runs, local_runs = summaries["ray"]["runs"], summaries["local"]["runs"]
    assert [r["name"] for r in ray_runs] == [r["name"] for r in local_runs]
    assert len(ray_runs) == 6  # (bp_lambda × 2 λ + bptt) × 2 seeds
    for on_ray, local in zip(ray_runs, local_runs, strict=True):
        assert on_ray["config"] == local["config"]
        for key in ("status", "num_timesteps", "num_episodes", "final", "test"):
            assert on_ray["metrics"][key] == local["metrics"][key], (on_ray["name"], key)
        learner = get_learner(on_ray["config"]["learner"])
        a = learner.load(outs["ray"] / on_ray["name"] / "checkpoint.pt")
        b = learner.load(outs["local"] / local["name"] / "checkpoint.pt")
        for p, q in zip(a.core.parameters(), b.core.parameters(), strict=True):
            assert torch.equal(p, q)
    assert summaries["ray"]["table"] == summaries["local"]["table"]


@pytest.mark.usefixtures("local_ray")
def test_a_tune_on_ray_runs_its_workers_as_ray_tasks_on_one_study(tmp_path):
    tune_file = tmp_path / "tune.yaml"
    tune_file.write_text(
        yaml.safe_dump(
            {
                "env": "bpl/LineDraw-v0",
                "env_kwargs": {"sequence_length": 3},
                "learner": "bp_lambda",
                "num_envs": 2,
                "updates": 3,
                "hyperparameters": {"hidden_size": 3},
                "search": {"lam": {"uniform": [0.0, 1.0]}},
                "pruner": "none",
            }
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "tune",
                str(tune_file),
                "--backend",
                "ray",
                "--workers",
                "2",
                "--trials",
                "3",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["complete"] == 3
    assert len({row["params"]["lam"] for row in results["trials"]}) == 3
    assert all(row["batches"] == 3 for row in results["trials"])
