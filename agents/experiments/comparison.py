"""Comparisons of learners: the runs a preset names, their cells, and the pieces of a table that
every comparison shares.

A comparison preset (``digits.yaml``, ``seqmnist.yaml``, ``copy_repeat.yaml``) is a base run (its
top level) plus ``experiment.learners``: label -> ``{learner: NAME, hyperparameters: {...}}``.
Every (learner, seed) is a resumable cell (:mod:`agents.experiments.cells`) named
``LABEL_seedK``; the cells are ordered seed by seed, so that the first results to finish cover
every learner.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.experiments import hyperparameters as hp
from agents.experiments.building import env_arguments
from agents.experiments.cells import Cell, cell_name, cell_progress, read_cell_json
from agents.experiments.config import check_keys
from agents.experiments.parallel import run_cells
from agents.experiments.run_config import RunConfig, learner_class
from agents.experiments.training import RUN_JSON

__all__ = [
    "CURVE_POINTS",
    "cell_record",
    "comparison_cells",
    "comparison_runs",
    "curve_over_seeds",
    "learner_row",
    "results_by_label",
    "run_comparison",
    "with_learners",
    "synth_path",
]

CURVE_POINTS = 500
"""Curves in results.json hold at most this many points (means over equal windows of updates)."""


def comparison_runs(config: Mapping[str, Any]) -> dict[str, RunConfig]:
    """The runs an experiment compares: label -> :class:`RunConfig`, each validated.

    ``config`` is an experiment preset: its top level is the base run, and
    ``experiment.learners`` maps a label to ``{learner: NAME, hyperparameters: {...}}`` and,
    optionally, ``env_kwargs: {...}`` merged into the base run's (e.g. ``{stream: true}``).
    Each learner gets the base run's hyper-parameters that its constructor takes (BPTT has no
    λ), then its own, which must all be valid for it.
    """
    base = RunConfig.from_mapping({k: v for k, v in config.items() if k != "experiment"})
    runs = {}
    for label, entry in config["experiment"]["learners"].items():
        where = f"experiment.learners.{label}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with a `learner:` key, got {entry!r}")
        check_keys(
            where, entry, ("learner", "hyperparameters", "env_kwargs"), required=("learner",)
        )
        accepted = hp.hyperparameters_of(learner_class(entry["learner"]))
        shared = {k: v for k, v in base.hyperparameters.items() if k in accepted}
        own = dict(entry.get("hyperparameters") or {})
        run = base.derive(learner=entry["learner"], env_kwargs=entry.get("env_kwargs"))
        env_arguments(run.env, run.env_kwargs)
        runs[str(label)] = dataclasses.replace(run, hyperparameters={**shared, **own}).resolved()
    return runs


def with_learners(config: Mapping[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """A comparison preset restricted to the learners ``labels`` (in the preset's order).

    Raises:
        TypeError: ``labels`` is not a list of strings.
        ValueError: the preset compares no learners, ``labels`` is empty, repeats a label or
            names one the preset does not have (the message lists the preset's labels).
    """
    learners = (config.get("experiment") or {}).get("learners")
    if not isinstance(learners, Mapping):
        raise ValueError("learners: this experiment's preset compares no learners")
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"learners must be a list of labels (strings), got {labels!r}")
    known = [str(label) for label in learners]
    unknown = [label for label in labels if label not in known]
    if not labels or unknown or len(set(labels)) != len(labels):
        raise ValueError(
            f"learners must be distinct labels of the preset's experiment.learners, got "
            f"{list(labels)}; the preset has {known}"
        )
    restricted: dict[str, Any] = copy.deepcopy(dict(config))
    restricted["experiment"]["learners"] = {
        label: entry for label, entry in learners.items() if str(label) in labels
    }
    return restricted


def run_comparison(
    config: Mapping[str, Any],
    seeds: Sequence[int],
    cell: Callable[..., Any],
    *,
    workers: int,
    progress: bool,
    desc: str,
) -> tuple[dict[str, RunConfig], dict[str, list[Any]]]:
    """Run ``cell`` (a picklable function of ``{"config": run dict}``) for every learner of a
    comparison preset and every seed, in parallel, in memory (no cells on disk: for the
    experiments that take minutes and are not resumable).

    Returns:
        (the runs, label -> :class:`RunConfig`; the results, label -> one result per seed).
    """
    runs = comparison_runs(config)
    keys = [(label, seed) for label in runs for seed in seeds]
    cells = [{"config": runs[label].derive(seed=seed).to_dict()} for label, seed in keys]
    results: dict[str, list[Any]] = {label: [] for label in runs}
    outputs = run_cells(cell, cells, workers=workers, progress=progress, desc=desc)
    for (label, _), output in zip(keys, outputs, strict=True):
        results[label].append(output)
    return runs, results


def comparison_cells(config: Mapping[str, Any], seeds: Sequence[int]) -> list[Cell]:
    """One cell per (learner, seed), seed by seed; key ``(label, seed)``."""
    runs = comparison_runs(config)
    return [
        Cell(cell_name(label, f"seed{seed}"), (label, seed), run.derive(seed=seed))
        for seed in seeds
        for label, run in runs.items()
    ]


def results_by_label(
    runs: Mapping[str, RunConfig], seeds: Sequence[int], results: Mapping[tuple, Any]
) -> dict[str, list[Any]]:
    """label -> the results of its finished seeds, in seed order; labels without any are left
    out (a partial reproduction)."""
    grouped = {
        label: [results[(label, s)] for s in seeds if (label, s) in results] for label in runs
    }
    return {label: found for label, found in grouped.items() if found}


def synth_path(run: RunConfig) -> str:
    """How the learner's synthesiser update is computed, for tables: BP(λ)'s ``synth_update``
    (``"trace"``, ``"forward view"``, ...) and ``", clipped"`` when each token's increment is
    clipped; ``"–"`` for learners without that choice."""
    known = hp.hyperparameters_of(learner_class(run.learner))
    if "synth_update" not in known:
        return "–"
    path = run.hyperparameters.get("synth_update", known["synth_update"].default)
    clipped = run.hyperparameters.get("clip_synth_update", known["clip_synth_update"].default)
    return str(path).replace("_", " ") + (", clipped" if clipped else "")


def cell_record(folder: pathlib.Path) -> dict[str, Any]:
    """What every comparison keeps of a finished cell besides its own measures: ``seconds``
    (training wall time, over all resumes) and ``synth_clip_fraction`` (mean over batches of
    the logged ``train/synth_clip_fraction``, or None where it is not logged)."""
    progress = cell_progress(folder)
    fraction = progress.get("train/synth_clip_fraction")
    finite = None if fraction is None else fraction[np.isfinite(fraction)]
    return {
        "seconds": float(read_cell_json(folder, RUN_JSON)["elapsed_s"]),
        "synth_clip_fraction": float(finite.mean()) if finite is not None and finite.size else None,
    }


def learner_row(label: str, run: RunConfig, cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The columns every comparison row starts with."""
    fractions = [c["synth_clip_fraction"] for c in cells if c["synth_clip_fraction"] is not None]
    return {
        "label": label,
        "learner": run.learner,
        "hyperparameters": run.hyperparameters,
        "synth_update": synth_path(run),
        "synth_clip_fraction": float(np.mean(fractions)) if fractions else None,
        "seeds": len(cells),
        "seconds": float(np.mean([c["seconds"] for c in cells])),
    }


def curve_over_seeds(
    curves: Sequence[Sequence[float]], points: int = CURVE_POINTS
) -> dict[str, Any]:
    """Mean and sample std over seeds of per-update curves of equal length n, each averaged over
    windows of ceil(n / points) updates first.

    Returns:
        ``{"update": the last update of each window (1-based), "mean", "std"}`` (std None for
        one seed).
    """
    values = np.asarray(curves, dtype=np.float64)  # (seeds, n)
    n = values.shape[1]
    window = max(1, math.ceil(n / points))
    starts = np.arange(0, n, window)
    ends = np.minimum(starts + window, n)
    binned = np.stack(
        [values[:, a:b].mean(axis=1) for a, b in zip(starts, ends, strict=True)], axis=1
    )  # (seeds, windows)
    return {
        "update": ends,
        "mean": binned.mean(axis=0),
        "std": binned.std(axis=0, ddof=1) if len(values) > 1 else None,
    }
