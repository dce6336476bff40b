"""``bpl reproduce``: run one of the paper's experiments into a folder, continue it, report it.

A reproduction folder holds::

    reproduction.json   what was asked (experiment, preset, seeds, the settings used, the
                        command); ``--resume`` reads it
    results.md          the table (mean ± std over seeds) with the command that made it
    results.json        the same numbers, with the configuration used
    *.png               figures
    cells/NAME/         resumable experiments: one run folder per cell (a learner and a seed,
                        ...; see :mod:`agents.experiments.cells`)

Experiments whose module provides ``make_cells``, ``evaluate`` and ``summarise`` (toy, digits,
seqmnist, copy-repeat) are resumable: :func:`resume_reproduction` trains the cells that are not
finished from their checkpoints, exactly, and never reruns a finished one; the results are
rewritten from every finished cell's files each time a cell finishes (marked as partial until
all have). The others (random-walk, compare, and the tasks beyond the paper: adding, charlm,
mackey-glass) take minutes and provide ``run`` instead.
"""

from __future__ import annotations

import copy
import json
import pathlib
import shlex
import time
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from agents.experiments.adoption import adopt_cells, plan_adoption
from agents.experiments.catalogue import EXPERIMENTS, Experiment, experiment_module
from agents.experiments.cells import Cell, run_cells_in
from agents.experiments.comparison import with_learners
from agents.experiments.config import load_config
from agents.experiments.output import prepare_output_dir, write_json, write_text
from bpl_envs.checks import check_int

__all__ = ["EXPERIMENTS", "MANIFEST", "Experiment", "reproduce", "resume_reproduction"]

MANIFEST = "reproduction.json"
MANIFEST_FORMAT = 1
_MANIFEST_KEYS = {
    "format",
    "experiment",
    "preset",
    "quick",
    "seeds",
    "given",
    "resumable",
    "config",
    "workers",
    "wall_s",
}
CHECKPOINT_SECONDS = 60.0
"""Reproduction cells write a checkpoint at the first batch boundary a minute after the last."""
PARTIAL_REPORT_SECONDS = 60.0
"""While cells run, the results are rewritten when a cell finishes at most this often."""


def _resumable(module: ModuleType) -> bool:
    return hasattr(module, "make_cells")


def _with_updates(
    name: str, module: ModuleType, settings: dict[str, Any], updates: int
) -> dict[str, Any]:
    """``settings`` with every training run's budget set to ``updates`` batches."""
    check_int("updates", updates, minimum=1)
    if hasattr(module, "with_updates"):
        return module.with_updates(settings, updates)
    if "env" not in settings:
        raise ValueError(
            f"experiment {name!r} has no budget in updates (its preset trains no learner on "
            "batches of sequences); change its budget in a --config file instead"
        )
    settings = copy.deepcopy(settings)
    settings.pop("steps", None)
    settings["updates"] = updates
    return settings


def _command(manifest: Mapping[str, Any], workers: int) -> str:
    """The command line that makes this reproduction from scratch."""
    name = manifest["experiment"]
    parts = ["bpl compare"] if name == "compare" else [f"bpl reproduce {name}"]
    given = manifest["given"]
    parts += ["--quick"] * manifest["quick"]
    parts += [f"--seeds {given['seeds']}"] * (given["seeds"] is not None)
    parts += [f"--updates {given['updates']}"] * (given["updates"] is not None)
    parts += [f"--config {given['config']}"] * (given["config"] is not None)
    parts += [f"--{key.replace('_', '-')} {value}" for key, value in given["options"].items()]
    if given.get("learners") is not None:
        parts.append(" ".join(["--learners", *map(shlex.quote, given["learners"])]))
    parts += [f"--adopt {shlex.quote(given['adopt'])}"] * (given.get("adopt") is not None)
    return " ".join([*parts, f"--workers {workers}"])


def reproduce(
    name: str,
    *,
    out: str | pathlib.Path,
    quick: bool = False,
    seeds: int | None = None,
    config: str | None = None,
    updates: int | None = None,
    learners: Sequence[str] | None = None,
    adopt: str | pathlib.Path | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int = 1,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    **options: Any,
) -> dict[str, Any]:
    """Run experiment ``name`` and write its table, JSON and figures into ``out``.

    Args:
        name: one of :data:`EXPERIMENTS`.
        out: output folder (refused if it holds files, unless ``force``).
        quick: use the ``_quick`` preset (minutes instead of hours).
        seeds: number of seeds (0 .. seeds-1); default: the preset's.
        config: a YAML file replacing the packaged preset.
        updates: the budget of every training run, in batches (default: the preset's).
        learners: comparisons: only these labels of the preset's ``experiment.learners``
            (default: all); ``--resume`` keeps to them.
        adopt: resumable experiments: a folder of run folders trained elsewhere; those that are
            cells of this reproduction are copied in and continued, not retrained
            (:mod:`agents.experiments.adoption`).
        force: replace the content of an existing ``out``.
        progress: progress bars.
        workers: parallel processes for the experiment's independent runs.
        checkpoint_seconds: resumable experiments: a cell writes a checkpoint at the first
            batch boundary this many seconds after its last one (0: every batch).
        options: experiment-specific options (``mnist_root`` for ``seqmnist``).

    Returns:
        What ``results.json`` holds.
    """
    experiment, module = experiment_module(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(experiment.options))
    if unknown:
        accepted = list(experiment.options) or "no options"
        raise ValueError(f"experiment {name!r} takes {accepted}, got {unknown}")
    preset = experiment.preset + ("_quick" if quick else "")
    if hasattr(module, "preset_for"):
        preset = module.preset_for(preset, **options)
    preset = config or preset
    settings = load_config(preset)
    if "experiment" not in settings:
        raise ValueError(f"{preset}: an experiment config needs an `experiment:` section")
    seed_count = settings["experiment"]["seeds"] if seeds is None else seeds
    check_int("seeds", seed_count, minimum=1)
    if hasattr(module, "configure"):
        settings = module.configure(settings, **options)
    if updates is not None:
        settings = _with_updates(name, module, settings, updates)
    if learners is not None:
        settings = with_learners(settings, list(learners))
    module.check(settings)  # every run validated before the folder is touched
    seed_list = list(range(seed_count))
    adoption = None
    if _resumable(module):
        cells = module.make_cells(settings, seed_list)
        if adopt is not None:
            adoption = plan_adoption(adopt, cells)
    elif adopt is not None:
        raise ValueError(f"adopt: experiment {name!r} has no cells to adopt (not resumable)")
    out = prepare_output_dir(out, force)
    manifest = {
        "format": MANIFEST_FORMAT,
        "experiment": name,
        "preset": str(preset),
        "quick": quick,
        "seeds": seed_list,
        "given": {
            "seeds": seeds,
            "updates": updates,
            "config": config,
            "options": options,
            "learners": None if learners is None else list(learners),
            "adopt": None if adopt is None else str(adopt),
        },
        "resumable": _resumable(module),
        "config": settings,
        "workers": workers,
        "wall_s": 0.0,  # of every invocation that trained, added up
    }
    if adoption is not None:
        manifest["adopted"] = adoption.adopted
        adopt_cells(adoption, out)
        for folders, why in (
            (adoption.no_checkpoint, "they hold no checkpoint; those cells train anew"),
            (adoption.unmatched, "they are no cell of this reproduction"),
        ):
            if folders:
                warnings.warn(f"--adopt: not adopted, {why}: {folders}", stacklevel=2)
    write_json(out / MANIFEST, manifest)
    if _resumable(module):
        return _complete(
            out,
            manifest,
            module,
            workers=workers,
            progress=progress,
            train_pending=True,
            checkpoint_seconds=checkpoint_seconds,
        )
    start = time.perf_counter()
    table, data, figures = module.run(settings, out, seed_list, progress=progress, workers=workers)
    manifest["wall_s"] = time.perf_counter() - start
    write_json(out / MANIFEST, manifest)
    return _write_results(out, manifest, experiment, table, data, figures)


def _read_manifest(folder: pathlib.Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a reproduction folder: {path} not found (`bpl reproduce NAME "
            "--out DIR` writes it)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it was left as it is") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a reproduction record of format {MANIFEST_FORMAT}")
    missing = sorted(_MANIFEST_KEYS - set(manifest))
    if missing:
        raise ValueError(f"{path} lacks {missing}: it is not a complete reproduction record")
    if manifest["experiment"] not in EXPERIMENTS:
        raise ValueError(f"{path} names an unknown experiment {manifest['experiment']!r}")
    return manifest


def resume_reproduction(
    folder: str | pathlib.Path,
    *,
    name: str | None = None,
    updates: int | None = None,
    progress: bool = True,
    workers: int = 1,
    report_only: bool = False,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
) -> dict[str, Any]:
    """Continue the reproduction in ``folder``: train every cell that is not finished from its
    checkpoint (or from scratch where it has none), then rewrite the results from all cells.

    Args:
        folder: a folder written by :func:`reproduce`.
        name: the experiment the caller expects (None: whichever the folder holds).
        updates: a larger budget for every cell (finished ones continue from their
            checkpoints); None keeps the reproduction's.
        progress, workers, checkpoint_seconds: as :func:`reproduce`.
        report_only: train nothing; rewrite the results from the cells that are finished.

    Returns:
        What ``results.json`` holds.

    Raises:
        FileNotFoundError: ``folder`` is not a reproduction.
        ValueError: naming the file: another experiment than ``name``, an experiment that is
            not resumable, a smaller budget than the reproduction's, or a cell whose files
            cannot be read (nothing is deleted).
    """
    folder = pathlib.Path(folder)
    manifest = _read_manifest(folder)
    if name is not None and manifest["experiment"] != name:
        raise ValueError(
            f"{folder / MANIFEST} is a reproduction of {manifest['experiment']!r}, not of {name!r}"
        )
    _, module = experiment_module(manifest["experiment"])
    if not manifest["resumable"] or not _resumable(module):
        raise ValueError(
            f"{folder / MANIFEST}: {manifest['experiment']!r} takes minutes and is "
            "not resumable; run it again with --force"
        )
    if updates is not None and report_only:
        raise ValueError("report_only rewrites the results as they are; it takes no updates")
    if updates is not None:
        current = manifest["config"].get("updates")
        if current is None or updates < current:
            raise ValueError(
                f"{folder / MANIFEST}: updates must be at least the reproduction's budget "
                f"({current} updates), got {updates}; finished cells cannot be shortened"
            )
        manifest["config"] = _with_updates(
            manifest["experiment"], module, manifest["config"], updates
        )
        manifest["given"]["updates"] = updates
        module.check(manifest["config"])
        write_json(folder / MANIFEST, manifest)
    return _complete(
        folder,
        manifest,
        module,
        workers=workers,
        progress=progress,
        train_pending=not report_only,
        checkpoint_seconds=checkpoint_seconds,
    )


def _complete(
    folder: pathlib.Path,
    manifest: dict[str, Any],
    module: ModuleType,
    *,
    workers: int,
    progress: bool,
    train_pending: bool,
    checkpoint_seconds: float | None,
) -> dict[str, Any]:
    """Bring the cells of a resumable reproduction to their budget (unless ``train_pending``
    is False) and write the results, after each finished cell and at the end."""
    experiment = EXPERIMENTS[manifest["experiment"]]
    settings, seeds = manifest["config"], manifest["seeds"]
    cells = module.make_cells(settings, seeds)
    start = last_report = time.perf_counter()
    wall_before = manifest["wall_s"]
    finished: dict[tuple, Any] = {}
    if train_pending:
        manifest["workers"] = workers

    def report() -> dict[str, Any]:
        if train_pending:
            manifest["wall_s"] = wall_before + time.perf_counter() - start
            write_json(folder / MANIFEST, manifest)
        return _write_cell_results(folder, manifest, experiment, module, cells, finished)

    def report_now_and_then(results: dict[tuple, Any]) -> None:
        nonlocal last_report
        finished.update(results)
        if time.perf_counter() - last_report >= PARTIAL_REPORT_SECONDS:
            report()
            last_report = time.perf_counter()

    try:
        finished.update(
            run_cells_in(
                folder,
                cells,
                module.evaluate,
                workers=workers,
                progress=progress,
                checkpoint_seconds=checkpoint_seconds,
                train_pending=train_pending,
                on_result=report_now_and_then,
            )
        )
    except KeyboardInterrupt:  # report the cells finished so far, marked as partial
        finished.update(
            run_cells_in(
                folder,
                cells,
                module.evaluate,
                workers=1,
                progress=False,
                checkpoint_seconds=None,
                train_pending=False,
            )
        )
        report()
        raise
    return report()


def _write_cell_results(
    folder: pathlib.Path,
    manifest: dict[str, Any],
    experiment: Experiment,
    module: ModuleType,
    cells: list[Cell],
    results: dict[tuple, Any],
) -> dict[str, Any]:
    """Results from the finished cells; a note says which are missing when not all are."""
    missing = [cell.name for cell in cells if cell.key not in results]
    if results:
        table, data, figures = module.summarise(
            manifest["config"], manifest["seeds"], results, folder
        )
    else:
        table, data, figures = "No cell has finished yet.\n", {"results": []}, []
    note = ""
    if missing:
        note = (
            f"**Partial results: {len(cells) - len(missing)} of {len(cells)} cells "
            f"finished** (not yet: {', '.join(missing)}; continue with `bpl reproduce "
            f"--resume {folder}`).\n\n"
        )
    cell_seconds = sum(value.get("seconds", 0.0) for value in results.values())
    extra = {
        "partial": bool(missing),
        "cells_missing": missing,
        "cell_seconds": round(cell_seconds, 1),
    }
    return _write_results(folder, manifest, experiment, note + table, {**data, **extra}, figures)


def _write_results(
    out: pathlib.Path,
    manifest: dict[str, Any],
    experiment: Experiment,
    table: str,
    data: dict[str, Any],
    figures: list,
) -> dict[str, Any]:
    """results.md and results.json; the wall time is that of every invocation that trained,
    with the workers of the latest."""
    figure_names = [pathlib.Path(f).name for f in figures]
    workers, elapsed = manifest["workers"], manifest["wall_s"]
    command = _command(manifest, workers)
    seeds = manifest["seeds"]
    header = (
        f"# {experiment.title}\n\n`{command}`: preset `{manifest['preset']}`, seeds "
        f"{seeds}, {elapsed:.0f} s with {workers} worker(s).\n\n"
    )
    adopted = manifest.get("adopted") or {}
    if adopted:
        header += (
            f"Adopted cells (trained outside this reproduction, then continued in it; "
            f"`--adopt`): {', '.join(f'{name} from {source}' for name, source in adopted.items())}"
            ".\n\n"
        )
    rows = data.get("results", [])
    if rows and all("label" in r and "seconds" in r for r in rows):
        header += (
            "Training time per cell, mean over seeds: "
            + ", ".join(f"{r['label']} {r['seconds']:.0f} s" for r in rows)
            + ".\n\n"
        )
    images = "".join(f"\n![{n}]({n})\n" for n in figure_names)
    write_text(out / "results.md", header + table + images)
    result = {
        "experiment": manifest["experiment"],
        "title": experiment.title,
        "command": command,
        "preset": manifest["preset"],
        "quick": manifest["quick"],
        "seeds": seeds,
        "workers": workers,
        "elapsed_s": round(elapsed, 1),
        "config": manifest["config"],
        **({"adopted": adopted} if adopted else {}),
        **data,
        "figures": figure_names,
        "table": table,
    }
    write_json(out / "results.json", result)
    return result
