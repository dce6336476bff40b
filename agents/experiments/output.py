"""Where results go: output folders, mean ± std summaries, markdown tables, JSON and figures.

Every command that writes results (``bpl train``, ``bpl reproduce``, ``bpl compare``,
``bpl sweep``) writes into one output folder that it creates itself
(:func:`~agents.experiments.output_folder.prepare_output_dir`); an existing, non-empty folder is
only replaced when the user asked for it (``--force``), and then only the files bp-lambda wrote.
The writers here write atomically and record each file in the folder's manifest.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from agents.experiments.output_folder import OutputExistsError, atomic_write, prepare_output_dir

__all__ = [
    "OutputExistsError",
    "markdown_table",
    "format_mean_std",
    "mean_std",
    "new_figure",
    "over_seeds",
    "prepare_output_dir",
    "save_figure",
    "write_json",
    "write_text",
]


def mean_std(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` of a sample; std is the sample std (ddof 1), None for n = 1.

    Non-finite values are kept (a diverged run is a result): the mean is then non-finite too.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value, got none")
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else None
    return {"mean": float(array.mean()), "std": std, "values": values}


def format_mean_std(summary: dict[str, Any], digits: int = 3) -> str:
    """``"0.912 ± 0.013"`` (``"0.912"`` for one seed) from :func:`mean_std`'s dict."""
    mean, std = summary["mean"], summary["std"]
    if not math.isfinite(mean):
        return "diverged" if not math.isnan(mean) else "nan"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def over_seeds(count: int) -> str:
    """How a table's numbers were aggregated: ``"one seed"`` or ``"mean ± std over 3 seeds"``."""
    return "one seed" if count == 1 else f"mean ± std over {count} seeds"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are written with ``str`` (format numbers beforehand)."""
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row needs {len(header)} cells (one per column of {header})")
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """JSON-ready version of numpy scalars/arrays and paths (NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def write_json(path: str | pathlib.Path, data: dict[str, Any]) -> pathlib.Path:
    """Write ``data`` as indented JSON (numpy values converted, NaN/inf written as null)."""
    text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))


def write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write(path, lambda file: file.write(text.encode()))


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs):
    """A matplotlib ``Figure`` and its axes, built without pyplot.

    No backend and no global figure registry are involved, so plotting works the same in a
    terminal, a worker process or a notebook, and nothing is left open.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def save_figure(fig, path: str | pathlib.Path, dpi: int = 100) -> pathlib.Path:
    """Save a matplotlib figure as PNG (atomically) and return the path."""
    return atomic_write(path, lambda file: fig.savefig(file, dpi=dpi, format="png"))
