"""Output folders that only ever lose what bp-lambda itself wrote into them.

Every command that writes results (``bpl train``, ``bpl reproduce``, ``bpl compare``,
``bpl sweep``) creates its output folder with :func:`prepare_output_dir`, which puts a manifest
(``.bpl-outputs.json``) in it. Every file the library then writes there is recorded in that
manifest (:func:`record_output`; the writers of :mod:`agents.experiments.output` do it
themselves), and every write is atomic (:func:`atomic_write`: a temporary file, then a rename),
so an interrupted write leaves the previous version of the file intact.

``--force`` replaces an earlier run's results by deleting exactly the files its manifest lists
(and the sub-folders it lists, by their own manifests). It refuses a folder without a manifest,
and never touches the current directory, a parent of it, or the home directory: files that
bp-lambda did not write are never deleted.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import warnings
from collections.abc import Callable
from typing import IO

__all__ = [
    "MANIFEST",
    "OutputExistsError",
    "atomic_write",
    "prepare_output_dir",
    "record_output",
    "remove_recorded_outputs",
]

MANIFEST = ".bpl-outputs.json"
"""The file that marks a folder as bp-lambda output and lists what was written into it."""

_MANIFEST_FORMAT = 1
_TEMPORARY_SUFFIX = ".tmp"


class OutputExistsError(FileExistsError):
    """The output folder cannot be used: it holds results and ``force`` was not given, or
    ``force`` was given for a folder bp-lambda does not recognise as its own output."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> pathlib.Path:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it into place.

    The temporary file (``<name>.tmp`` beside ``path``) is flushed to disk before the rename,
    so ``path`` always holds either its previous content or the complete new one. The file is
    recorded in its folder's manifest (:func:`record_output`).
    """
    path = pathlib.Path(path)
    temporary = path.with_name(path.name + _TEMPORARY_SUFFIX)
    record_output(path)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _manifest_entries(folder: pathlib.Path) -> list[str] | None:
    """The names the manifest of ``folder`` records, or None if it has no readable manifest."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        return None
    entries = data.get("entries")
    if not isinstance(entries, list):
        return None
    return [e for e in entries if isinstance(e, str) and _is_plain_entry(e)]


def _is_plain_entry(entry: str) -> bool:
    """A name inside the folder: no separator (but a trailing one for folders), no ``..``."""
    name = entry[:-1] if entry.endswith("/") else entry
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _write_manifest(folder: pathlib.Path, entries: list[str]) -> None:
    text = (
        json.dumps(
            {"format": _MANIFEST_FORMAT, "written_by": "bp-lambda", "entries": entries}, indent=1
        )
        + "\n"
    )
    temporary = folder / (MANIFEST + _TEMPORARY_SUFFIX)
    temporary.write_text(text)
    os.replace(temporary, folder / MANIFEST)


def record_output(path: str | os.PathLike, *, folder: bool = False, pattern: bool = False) -> None:
    """Record ``path`` in the manifest of the folder it lies in, if that folder has one.

    Args:
        path: a file (or, with ``folder=True``, a sub-folder that gets its own manifest from
            :func:`prepare_output_dir`) inside an output folder.
        folder: ``path`` is a sub-folder.
        pattern: ``path.name`` is a glob pattern (files named by other libraries, e.g.
            TensorBoard's ``events.out.tfevents.*``).
    """
    path = pathlib.Path(path)
    entries = _manifest_entries(path.parent)
    if entries is None:
        return
    entry = path.name + ("/" if folder else "")
    if not _is_plain_entry(entry) or (not pattern and any(c in entry for c in "*?[")):
        raise ValueError(f"cannot record {path} as an output: {entry!r} is not a plain name")
    if entry not in entries:
        _write_manifest(path.parent, [*entries, entry])


def remove_recorded_outputs(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Delete what the manifest of ``folder`` records, then the manifest; return what is left.

    Only regular files whose names the manifest lists (and their ``.tmp`` leftovers) are
    deleted; a recorded sub-folder is emptied the same way through its own manifest and
    removed when nothing else is left in it. Symbolic links and anything unrecorded stay.

    Raises:
        OutputExistsError: ``folder`` has no readable manifest.
    """
    folder = pathlib.Path(folder)
    entries = _manifest_entries(folder)
    if entries is None:
        raise OutputExistsError(
            f"{folder} has no readable {MANIFEST}: it is not a folder "
            "bp-lambda wrote, so nothing in it is deleted"
        )
    for entry in entries:
        if entry.endswith("/"):
            sub = folder / entry[:-1]
            if sub.is_dir() and not sub.is_symlink() and _manifest_entries(sub) is not None:
                if not remove_recorded_outputs(sub):
                    sub.rmdir()
            continue
        for child in list(folder.iterdir()):
            name = child.name
            if (fnmatch.fnmatchcase(name, entry) or name == entry + _TEMPORARY_SUFFIX) and (
                child.is_file() and not child.is_symlink()
            ):
                child.unlink()
    (folder / MANIFEST).unlink()
    (folder / (MANIFEST + _TEMPORARY_SUFFIX)).unlink(missing_ok=True)
    return sorted(folder.iterdir())


def _protected(path: pathlib.Path) -> str | None:
    """Why ``--force`` must never empty ``path`` (None if it may)."""
    resolved = path.resolve()
    cwd = pathlib.Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "it is the current directory or one of its parents"
    home = pathlib.Path.home().resolve()
    if resolved == home or resolved in home.parents:
        return "it is the home directory or one of its parents"
    return None


def prepare_output_dir(path: str | os.PathLike, force: bool) -> pathlib.Path:
    """Create ``path`` for a new run's results (with a fresh manifest) and return it.

    An absent or empty folder is used as is. A folder with files in it is refused unless
    ``force``; with ``force``, the files an earlier bp-lambda run recorded in the folder's
    manifest are deleted (so no stale result can be mistaken for a new one) and every other
    file is kept, with a warning naming them. ``force`` is refused for a folder without a
    manifest and for the current directory, its parents and the home directory.

    Raises:
        OutputExistsError: ``path`` holds files and ``force`` is False, or ``force`` cannot
            be applied to it (the message says why).
        NotADirectoryError: ``path`` exists and is not a folder.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        ours = _manifest_entries(path) is not None
        if not force:
            advice = (
                "pass --force to replace them or choose another --out"
                if ours
                else "it was not written by bp-lambda (no " + MANIFEST + "), so --force "
                "will not replace it either: choose another --out"
            )
            raise OutputExistsError(f"the output folder {path} already holds files; {advice}")
        reason = _protected(path)
        if reason is not None:
            raise OutputExistsError(
                f"--force will not replace the content of {path}: {reason}; "
                "choose a dedicated --out folder"
            )
        if not ours:
            raise OutputExistsError(
                f"--force only replaces the results of an earlier bp-lambda run, and {path} "
                f"has no {MANIFEST} (it holds files bp-lambda did not write); nothing was "
                "deleted: choose another --out, or move those files away yourself"
            )
        kept = remove_recorded_outputs(path)
        if kept:
            names = ", ".join(p.name for p in kept[:10]) + (" ..." if len(kept) > 10 else "")
            warnings.warn(
                f"--force replaced the earlier results in {path} but kept "
                f"{len(kept)} item(s) bp-lambda did not write: {names}",
                stacklevel=2,
            )
    path.mkdir(parents=True, exist_ok=True)
    _write_manifest(path, [])
    return path
