"""Start a reproduction from run folders trained elsewhere (``bpl reproduce NAME --adopt DIR``).

A cell of a reproduction (:mod:`agents.experiments.cells`) is a ``bpl train`` run folder. Runs
made outside the reproduction, e.g. by a script that calls ``train`` for some learners and seeds
of a preset, are the same kind of folder; adopting them saves retraining them. Each run folder
directly inside ``DIR`` (a folder with a ``run.json``) is matched to the cell whose run it is: the
same configuration (env, learner, hyper-parameters, seed, ...) apart from the budget and the
logging (``updates``, ``steps``, ``save_every``, ``log_interval``), whatever the folder is
called. A matched run is **copied** into ``OUT/cells/NAME/`` (the source is never changed), then
the reproduction treats it as its own cell: a run that finished at the reproduction's budget is
only evaluated, a shorter or interrupted one resumes from its checkpoint, exactly.

Runs without a checkpoint (nothing to continue from) and runs that match no cell are not
adopted and are listed (:class:`Adoption`); a run past the reproduction's budget, two runs of
the same cell, or a file that cannot be read stop the reproduction with an error naming it,
before its folder is created (:func:`plan_adoption` writes nothing).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
from collections.abc import Sequence

from agents.experiments.cells import CELLS, Cell, comparable_config, inspect_cell
from agents.experiments.output_folder import (
    MANIFEST,
    atomic_write,
    prepare_output_dir,
    record_output,
)
from agents.experiments.run_config import RunConfig
from agents.experiments.training import RUN_JSON, load_run

__all__ = ["Adoption", "adopt_cells", "match_runs", "plan_adoption"]


@dataclasses.dataclass(frozen=True)
class Adoption:
    """Which runs a reproduction adopts (:func:`plan_adoption`).

    Attributes:
        adopted: cell name -> the run folder to copy into it.
        no_checkpoint: run folders of a cell that hold no checkpoint (the cell trains anew).
        unmatched: run folders that are no cell of this reproduction.
    """

    adopted: dict[str, str]
    no_checkpoint: list[str]
    unmatched: list[str]


def match_runs(
    source: pathlib.Path, cells: Sequence[Cell]
) -> tuple[dict[str, pathlib.Path], list[pathlib.Path]]:
    """The run folder in ``source`` of each cell it holds, and the run folders of no cell.

    Returns:
        (cell name -> run folder; run folders that match no cell).

    Raises:
        NotADirectoryError: ``source`` is not a folder.
        ValueError: naming the files: a run.json that cannot be read, or two runs of one cell.
    """
    if not source.is_dir():
        raise NotADirectoryError(f"--adopt {source} is not a folder of run folders")
    by_config = {_key(cell.config): cell for cell in cells}
    matches: dict[str, pathlib.Path] = {}
    unmatched = []
    for folder in sorted(p for p in source.iterdir() if (p / RUN_JSON).is_file()):
        config, _ = load_run(folder, require_checkpoint=False)
        cell = by_config.get(_key(config))
        if cell is None:
            unmatched.append(folder)
        elif cell.name in matches:
            raise ValueError(
                f"{matches[cell.name] / RUN_JSON} and {folder / RUN_JSON} are runs of the same "
                f"cell {cell.name!r}: move one of them out of {source}"
            )
        else:
            matches[cell.name] = folder
    return matches, unmatched


def _key(config: RunConfig) -> str:
    return json.dumps(comparable_config(config), sort_keys=True)


def plan_adoption(source: str | pathlib.Path, cells: Sequence[Cell]) -> Adoption:
    """Which runs in ``source`` a reproduction with ``cells`` adopts; writes nothing.

    Raises:
        NotADirectoryError, ValueError: see :func:`match_runs`; ValueError also for a run past
            the cell's budget or a checkpoint that does not load (naming the file).
    """
    source = pathlib.Path(source)
    matches, unmatched = match_runs(source, cells)
    by_name = {cell.name: cell for cell in cells}
    checkpointed = {
        name for name, folder in matches.items() if inspect_cell(folder, by_name[name]).checkpointed
    }
    return Adoption(
        adopted={name: str(folder) for name, folder in matches.items() if name in checkpointed},
        no_checkpoint=[str(folder) for name, folder in matches.items() if name not in checkpointed],
        unmatched=[str(folder) for folder in unmatched],
    )


def adopt_cells(adoption: Adoption, root: pathlib.Path) -> None:
    """Copy the runs of ``adoption`` (:func:`plan_adoption`) into ``root/cells/NAME/``.

    Args:
        adoption: what to adopt.
        root: the reproduction's folder (prepared, with its manifest).

    Raises:
        FileExistsError: ``root/cells/NAME`` already exists for a cell to adopt.
    """
    for name in adoption.adopted:
        if (root / CELLS / name).exists():
            raise FileExistsError(f"{root / CELLS / name} exists: a cell is adopted only once")
    if adoption.adopted and not (root / CELLS).is_dir():
        prepare_output_dir(root / CELLS, force=False)
        record_output(root / CELLS, folder=True)
    for name, folder in adoption.adopted.items():
        _copy_run(pathlib.Path(folder), root / CELLS / name)


def _copy_run(source: pathlib.Path, destination: pathlib.Path) -> None:
    """Copy the files of a run folder (not its sub-folders, nor its manifest) into a new folder
    whose manifest records each, so that ``--force`` may later delete exactly those."""
    prepare_output_dir(destination, force=False)
    record_output(destination, folder=True)
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.name == MANIFEST or path.name.endswith(".tmp"):
            continue
        with open(path, "rb") as original:
            atomic_write(destination / path.name, functools.partial(shutil.copyfileobj, original))
