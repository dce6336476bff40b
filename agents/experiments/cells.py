"""Resumable cells: every training run of a reproduction in a run folder of its own.

A reproduction (``bpl reproduce``) trains many runs, one per cell (e.g. a learner and a seed),
into::

    DIR/cells/NAME/         a run folder (:mod:`agents.experiments.training`): run.json,
                            progress.csv, TensorBoard events, checkpoint.pt, metrics.json
                            (no learning_curve.png: ``tensorboard --logdir DIR/cells`` shows
                            every cell's curves side by side)
    DIR/cells/NAME/result.json   what the experiment measured on the finished run

:func:`run_cells_in` trains each cell that is not finished: from scratch when its folder holds
no checkpoint, else from its checkpoint by :func:`~agents.experiments.training.resume`, which
continues exactly. Finished cells (the budget reached and ``result.json`` written) are read,
never rerun. Every existing cell folder is checked before anything runs; a file that cannot be
read stops the reproduction with an error naming it, and nothing is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from stable_baselines3.common.callbacks import BaseCallback

from agents.base import CheckpointError, _read_checkpoint
from agents.experiments.output import write_json
from agents.experiments.output_folder import prepare_output_dir, record_output
from agents.experiments.parallel import run_cells, stop_requested
from agents.experiments.run_config import RunConfig, learner_class
from agents.experiments.run_logs import read_progress
from agents.experiments.training import CHECKPOINT, RUN_JSON, load_run, resume, train

__all__ = [
    "CELLS",
    "RESULT",
    "Cell",
    "CellState",
    "cell_name",
    "cell_progress",
    "comparable_config",
    "inspect_cell",
    "read_cell_json",
    "run_cell",
    "run_cells_in",
]

CELLS = "cells"
RESULT = "result.json"
_BUDGET_FIELDS = ("steps", "updates", "save_every", "log_interval")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of a reproduction.

    Attributes:
        name: its folder under ``DIR/cells/``.
        key: how the experiment finds its result, e.g. ``(label, seed)``.
        config: the run (resolved: hyper-parameters checked and converted).
        evaluation: keyword arguments of the experiment's ``evaluate`` (plain data).
    """

    name: str
    key: tuple
    config: RunConfig
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)


def cell_name(*parts: Any) -> str:
    """A folder name from a label and more parts: ``cell_name("TBPTT(n=5)", "seed0")`` is
    ``"TBPTT_n=5_seed0"`` (characters other than letters, digits, ``.``, ``=`` and ``-`` become
    ``_``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9.=-]+", "_", str(p)).strip("_") for p in parts)


@dataclasses.dataclass(frozen=True)
class CellState:
    """What a cell folder holds.

    Attributes:
        done: batches (or steps, for a budget in steps) at its checkpoint; 0 without one.
        checkpointed: whether it has a checkpoint to resume from.
        finished: the run ended at its budget (run.json says ``finished``).
        result: the cached ``result.json`` of that finished run, or None.
    """

    done: int
    checkpointed: bool
    finished: bool
    result: dict[str, Any] | None


def _budget(config: RunConfig) -> int:
    """The run's budget: updates, or steps (a RunConfig holds exactly one)."""
    return cast(int, config.updates if config.updates is not None else config.steps)


def comparable_config(config: RunConfig) -> dict[str, Any]:
    """The configuration without its budget and logging (``steps``, ``updates``,
    ``save_every``, ``log_interval``), as plain JSON data: what a cell's folder must match."""
    data = {k: v for k, v in config.to_dict().items() if k not in _BUDGET_FIELDS}
    return json.loads(json.dumps(data))


def read_cell_json(folder: pathlib.Path, name: str) -> Any:
    """The JSON file ``name`` of a cell folder.

    Raises:
        ValueError: naming the file when it is missing or not valid JSON.
    """
    path = folder / name
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error}); it was left as it is") from None


def _checkpoint_counters(path: pathlib.Path, learner: str) -> dict[str, int]:
    """``num_episodes`` and ``num_timesteps`` of a checkpoint, which must load.

    Raises:
        CheckpointError: naming the file, and what to do about it.
    """
    try:
        checkpoint = _read_checkpoint(path, learner_class(learner).__name__)
    except CheckpointError as error:
        raise CheckpointError(
            f"{error}. Nothing was changed: to train this cell again from scratch, move its "
            f"folder {path.parent} away, then resume"
        ) from error
    return {
        "num_episodes": int(checkpoint["num_episodes"]),
        "num_timesteps": int(checkpoint["num_timesteps"]),
    }


def inspect_cell(folder: pathlib.Path, cell: Cell) -> CellState:
    """Check a cell's folder against the cell and say how far it got.

    Raises:
        ValueError: naming the file: run.json or result.json unreadable, a run of another
            configuration, a checkpoint that does not load, or a run past the cell's budget.
    """
    if not (folder / RUN_JSON).is_file():
        return CellState(0, False, False, None)
    config, run = load_run(folder, require_checkpoint=False)
    if comparable_config(config) != comparable_config(cell.config):
        raise ValueError(
            f"{folder / RUN_JSON} holds a run of another configuration than cell "
            f"{cell.name!r} of this reproduction: {comparable_config(config)} instead of "
            f"{comparable_config(cell.config)}"
        )
    if not (folder / CHECKPOINT).is_file():  # started, never checkpointed: nothing to resume
        return CellState(0, False, False, None)
    counters = _checkpoint_counters(folder / CHECKPOINT, cell.config.learner)
    done = counters["num_episodes" if cell.config.updates is not None else "num_timesteps"]
    if done > _budget(cell.config):
        raise ValueError(
            f"{folder / CHECKPOINT} is at {done} {'updates' if cell.config.updates else 'steps'},"
            f" past this reproduction's budget of {_budget(cell.config)}"
        )
    finished = run.get("status") == "finished" and done == _budget(cell.config)
    result = None
    if finished and (folder / RESULT).is_file():
        cached = read_cell_json(folder, RESULT)
        if isinstance(cached, dict) and cached.get("done") == done:
            result = cached["result"]
    return CellState(done, True, finished, result)


def cell_progress(folder: pathlib.Path) -> dict[str, Any]:
    """The columns of a finished cell's progress.csv (see
    :func:`~agents.experiments.run_logs.read_progress`)."""
    try:
        return read_progress(folder / "progress.csv")
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / 'progress.csv'} cannot be read ({error})") from None


class _ParentWatch(BaseCallback):
    """In a worker process, at batch boundaries: stop the cell (KeyboardInterrupt: the run keeps
    its last checkpoint) when the reproduction asks its workers to stop, and exit at once,
    writing nothing more, when the process that started the worker is gone, so that no orphan
    keeps writing into a cell folder that a resumed reproduction may train again."""

    def __init__(self) -> None:
        super().__init__()
        self._parent = multiprocessing.parent_process()

    def _exit_if_orphaned(self) -> None:
        if self._parent is not None and not self._parent.is_alive():
            os._exit(1)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:  # the previous batch is logged and checkpointed
        self._exit_if_orphaned()
        if stop_requested():
            raise KeyboardInterrupt

    def _on_rollout_end(self) -> None:
        self._exit_if_orphaned()


def run_cell(
    evaluate: Callable[..., dict[str, Any]],
    name: str,
    config: dict[str, Any],
    folder: str,
    evaluation: dict[str, Any],
    checkpoint_seconds: float | None,
) -> dict[str, Any]:
    """Train one cell to its budget (from scratch or from its checkpoint), then evaluate it.

    Returns:
        ``evaluate(folder, config, **evaluation)``, also written to ``folder/result.json``.
    """
    cell = Cell(name, (), RunConfig(**config), evaluation)
    path = pathlib.Path(folder)
    state = inspect_cell(path, cell)
    callbacks = [_ParentWatch()]
    if not state.checkpointed:
        train(
            cell.config,
            path,
            force=True,
            progress=False,
            stdout=False,
            callbacks=callbacks,
            checkpoint_seconds=checkpoint_seconds,
            plot=False,
        )
    elif not state.finished:
        resume(
            path,
            updates=cell.config.updates,
            steps=cell.config.steps,
            progress=False,
            stdout=False,
            callbacks=callbacks,
            checkpoint_seconds=checkpoint_seconds,
            plot=False,
        )
    result = evaluate(path, cell.config, **evaluation)
    write_json(path / RESULT, {"done": _budget(cell.config), "result": result})
    return result


def run_cells_in(
    root: pathlib.Path,
    cells: Sequence[Cell],
    evaluate: Callable[..., dict[str, Any]],
    *,
    workers: int,
    progress: bool,
    checkpoint_seconds: float | None,
    train_pending: bool = True,
    on_result: Callable[[dict[tuple, dict[str, Any]]], None] | None = None,
) -> dict[tuple, dict[str, Any]]:
    """Bring every cell of ``cells`` under ``root/cells/`` to its budget and collect results.

    Args:
        root: the reproduction folder.
        cells: the cells (their names must differ).
        evaluate: the experiment's ``evaluate(folder, config, **evaluation) -> dict``, a
            module-level function (worker processes import it).
        workers: parallel processes.
        progress: a progress bar over the cells.
        checkpoint_seconds: see :func:`~agents.experiments.training.train`.
        train_pending: False only reads the finished cells (``--report-only``).
        on_result: called with the results so far each time a cell finishes.

    Returns:
        cell key -> result, for the finished cells (all of them unless ``train_pending`` is
        False).
    """
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"cell names must differ, got {names}")
    folders = {cell.name: root / CELLS / cell.name for cell in cells}
    states = {cell.name: inspect_cell(folders[cell.name], cell) for cell in cells}
    results: dict[tuple, dict[str, Any]] = {}
    pending = []
    for cell in cells:
        cached = states[cell.name].result
        if cached is None:
            pending.append(cell)
        else:
            results[cell.key] = cached
    if not train_pending or not pending:
        return results
    # cells that finished training but have no result yet (e.g. adopted ones) are only
    # evaluated: do that first, so that an interruption while others train keeps their results
    pending.sort(key=lambda cell: not states[cell.name].finished)
    if not (root / CELLS).is_dir():  # recorded, so that --force replaces the cells too
        prepare_output_dir(root / CELLS, force=False)
        record_output(root / CELLS, folder=True)
    for cell in pending:
        record_output(folders[cell.name], folder=True)
    arguments = [
        {
            "evaluate": evaluate,
            "name": cell.name,
            "config": cell.config.to_dict(),
            "folder": str(folders[cell.name]),
            "evaluation": cell.evaluation,
            "checkpoint_seconds": checkpoint_seconds,
        }
        for cell in pending
    ]

    def collect(index: int, result: dict[str, Any]) -> None:
        results[pending[index].key] = result
        if on_result is not None:
            on_result(results)

    run_cells(
        run_cell,
        arguments,
        workers=workers,
        progress=progress,
        desc=f"cells ({len(cells) - len(pending)} of {len(cells)} done before)",
        on_result=collect,
    )
    return results
