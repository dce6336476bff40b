"""README tables from committed results: ``bpl report``.

A results table in a markdown file (the README) is a generated block between two markers that
name the results folder, relative to the markdown file::

    <!-- bpl report docs/results/digits_quick -->
    `bpl reproduce digits --quick --workers 2`: 73 s on 2 worker(s) ...
    | learner | ... |
    <!-- end bpl report -->

:func:`render_block` makes a block's content from the folder's ``results.json`` (the command that
made it, its wall time, the table and the figures); :func:`update_markdown` rewrites every block
of a file, and reports which blocks differed, so that a check can fail when the README no longer
shows what the committed results say.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

__all__ = ["BLOCK", "render_block", "update_markdown"]

BLOCK = re.compile(
    r"(<!-- bpl report (?P<folder>\S+) -->\n)(?P<body>.*?)(<!-- end bpl report -->)", re.DOTALL
)
"""A generated block: the opening marker naming the folder, the body, the closing marker."""


def _results(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: `bpl reproduce ... --out {path.parent}` writes it"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    missing = sorted({"command", "elapsed_s", "workers", "table", "figures"} - set(data))
    if missing:
        raise ValueError(f"{path} lacks {missing}: it was not written by `bpl reproduce`")
    return data


def render_block(folder: str, base: pathlib.Path) -> str:
    """The body of the block for the results folder ``folder`` (as written in the marker,
    relative to ``base``, the markdown file's folder)."""
    data = _results(base / folder / "results.json")
    timing = f"{data['elapsed_s']:.0f} s on {data['workers']} worker(s)"
    if data.get("cell_seconds"):
        timing += f", {data['cell_seconds']:.0f} s of training over all cells"
    lines = [
        f"`{data['command']}`: {timing} ([results.md]({folder}/results.md)).",
        "",
        data["table"].rstrip("\n"),
        "",
    ]
    lines += [f"![{name}]({folder}/{name})\n" for name in data["figures"]]
    return "\n".join(lines)


def update_markdown(path: str | pathlib.Path, *, write: bool = True) -> list[str]:
    """Render every block of the markdown file ``path`` from its results folder.

    Args:
        path: the markdown file (e.g. README.md).
        write: rewrite the file when a block differs (False: only compare).

    Returns:
        The folders of the blocks that differed from their rendering (before rewriting).

    Raises:
        ValueError: the file has no block.
    """
    path = pathlib.Path(path)
    text = path.read_text()
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        body = render_block(match["folder"], path.parent)
        if body != match["body"]:
            stale.append(match["folder"])
        return match.group(1) + body + match.group(4)

    new_text, count = BLOCK.subn(replace, text)
    if count == 0:
        raise ValueError(
            f"{path} has no `<!-- bpl report FOLDER -->` ... `<!-- end bpl report -->` block"
        )
    if write and stale:
        path.write_text(new_text)
    return stale
