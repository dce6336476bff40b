"""Grids of training runs from a YAML file (``bpl sweep``), run in parallel processes or on Ray.

Each cell of the grid is one :func:`agents.experiments.training.train` run in its own folder,
so the layout is the same whatever ran it::

    OUT/summary.md        one row per configuration: final metrics, mean ± std over seeds
    OUT/summary.json      every run's configuration and metrics, and the grouped summary
    OUT/sweep.yaml        the grid file, as given
    OUT/RUN_NAME/         a `bpl train` run folder (progress.csv, TensorBoard, checkpoint, ...)
"""

from __future__ import annotations

import itertools
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import yaml

from agents.experiments import hyperparameters as hp
from agents.experiments.config import check_keys, load_config
from agents.experiments.output import (
    format_mean_std,
    markdown_table,
    mean_std,
    prepare_output_dir,
    write_json,
    write_text,
)
from agents.experiments.output_folder import record_output
from agents.experiments.parallel import connect_ray, run_cells
from agents.experiments.run_config import RunConfig, learner_class
from agents.experiments.training import train

__all__ = ["SWEEP_HELP", "expand_grid", "run_sweep"]

SWEEP_HELP = """\
grid file (YAML):
  env: bpl/SequentialDigits-v0       # an env id, or a list of them
  env_kwargs: {}                     # optional
  learner: [bp_lambda, bptt]         # a learner name, or a list of them
  num_envs: 20
  updates: 100                       # or steps: N
  hyperparameters: {core: lstm, hidden_size: 16}    # shared by every run
  grid:                              # every combination of these values
    lam: [0.0, 1.0]
    lr_core: [1.0e-3, 3.0e-4]
  seeds: 2                           # seeds 0..1, or a list [0, 5]

  Shared hyper-parameters and grid axes apply to each learner that takes them (bptt has no
  lam: it runs once per lr_core); a name no learner of the sweep takes is an error.
  A packaged example: `bpl sweep sweep_digits` (agents/configs/sweep_digits.yaml).
"""

SWEEP_KEYS = (
    "env",
    "env_kwargs",
    "learner",
    "num_envs",
    "steps",
    "updates",
    "hyperparameters",
    "grid",
    "seeds",
    "log_interval",
)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _seed_list(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return list(value)
    raise ValueError(f"seeds must be a positive int or a list of ints >= 0, got {value!r}")


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand_grid(
    grid_config: Mapping[str, Any], where: str = "sweep"
) -> list[tuple[str, RunConfig]]:
    """Every (run name, :class:`RunConfig`) of a grid file's content, validated.

    Raises:
        ValueError: unknown keys, learners or hyper-parameters (with the valid choices), a grid
            axis that is not a non-empty list, or a name no learner of the sweep takes.
    """
    check_keys(where, grid_config, SWEEP_KEYS, required=("env", "learner", "seeds"))
    envs, learners = _as_list(grid_config["env"]), _as_list(grid_config["learner"])
    shared = dict(grid_config.get("hyperparameters") or {})
    grid = dict(grid_config.get("grid") or {})
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"{where}: grid axis {name!r} must be a non-empty list, got {values!r}"
            )
    accepted = {name: hp.hyperparameters_of(learner_class(name)) for name in learners}
    for name in [*shared, *grid]:
        if not any(name in params for params in accepted.values()):
            valid = sorted(set().union(*accepted.values()))
            raise ValueError(
                f"{where}: no learner of the sweep ({learners}) takes the "
                f"hyper-parameter {name!r}; valid: {valid}"
            )
    seeds = _seed_list(grid_config["seeds"])
    budget = {k: grid_config[k] for k in ("steps", "updates", "log_interval") if k in grid_config}

    runs: list[tuple[str, RunConfig]] = []
    for env, learner in itertools.product(envs, learners):
        axes = {k: v for k, v in grid.items() if k in accepted[learner]}
        own = {k: v for k, v in shared.items() if k in accepted[learner]}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values, strict=True))
            for seed in seeds:
                config = RunConfig(
                    env=env,
                    learner=learner,
                    env_kwargs=grid_config.get("env_kwargs") or {},
                    hyperparameters={**own, **point},
                    num_envs=grid_config.get("num_envs", 1),
                    seed=seed,
                    **budget,
                )
                hp.resolve(learner_class(learner), config.hyperparameters, f"learner {learner!r}")
                parts = [
                    env.split("/")[-1],
                    learner,
                    *(f"{k}={_label(v)}" for k, v in point.items()),
                    f"seed{seed}",
                ]
                runs.append(("_".join(parts), config))
    return runs


def sweep_cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """One run of the grid (in a worker): :func:`train` into ``out``, quietly."""
    return train(RunConfig(**config), out, progress=False, stdout=False)


def run_sweep(
    grid_file: str,
    out: str | pathlib.Path,
    *,
    backend: str = "local",
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Run every cell of the grid in ``grid_file`` and write the summary into ``out``.

    With ``backend="ray"`` each run is a Ray task on the cluster of
    :func:`agents.experiments.parallel.connect_ray` (``ray_address``), connected before
    anything is written.

    Returns:
        What ``summary.json`` holds: ``runs`` (name, config, metrics), ``groups`` (one per
        configuration: its runs' final metrics as mean ± std over seeds), ``table`` and
        ``elapsed_s``.
    """
    if ray_address is not None and backend != "ray":
        raise ValueError(f"ray_address is for backend='ray', got backend={backend!r}")
    grid_config = load_config(grid_file)
    runs = expand_grid(grid_config, where=str(grid_file))
    if backend == "ray":
        connect_ray(ray_address)  # before anything is written
    out = prepare_output_dir(out, force)
    write_text(out / "sweep.yaml", yaml.safe_dump(grid_config, sort_keys=False))
    start = time.perf_counter()
    for name, _ in runs:  # each cell's folder gets its own manifest from train()
        record_output(out / name, folder=True)
    cells = [{"config": config.to_dict(), "out": str(out / name)} for name, config in runs]
    metrics = run_cells(
        sweep_cell,
        cells,
        workers=workers,
        backend=backend,
        progress=progress,
        desc="sweep runs",
        ray_address=ray_address,
    )
    elapsed = time.perf_counter() - start

    records = [
        {"name": name, "config": config.to_dict(), "metrics": result}
        for (name, config), result in zip(runs, metrics, strict=True)
    ]
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record["name"].rsplit("_seed", 1)[0]
        groups.setdefault(key, {"name": key, "runs": []})["runs"].append(record)

    def scores(record):
        return {**record["metrics"]["final"], **record["metrics"]["test"]}

    metric_names = sorted({m for r in records for m in scores(r)})
    shown = [
        m
        for m in metric_names  # a column that is the same for every run says nothing
        if len({scores(r).get(m) for r in records}) > 1
    ]
    rows = []
    for group in groups.values():
        group["final"] = {
            m: mean_std(scores(r)[m] for r in group["runs"])
            for m in metric_names
            if all(m in scores(r) for r in group["runs"])
        }
        rows.append(
            [group["name"], len(group["runs"])]
            + [format_mean_std(group["final"][m], 4) if m in group["final"] else "–" for m in shown]
        )
        group["runs"] = [r["name"] for r in group["runs"]]
    table = (
        "Final training metrics (mean over the last 10 % of batches of each run) and test "
        "metrics (envs with a test split), mean ± std over seeds.\n\n"
        + markdown_table(["configuration", "seeds", *shown], rows)
    )
    write_text(out / "summary.md", f"# Sweep {grid_file}\n\n{table}")
    summary = {
        "runs": records,
        "groups": list(groups.values()),
        "table": table,
        "elapsed_s": round(elapsed, 1),
        "backend": backend,
        "workers": workers,
    }
    write_json(out / "summary.json", summary)
    return summary
