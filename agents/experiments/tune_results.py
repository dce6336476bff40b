"""What ``bpl tune`` writes about a study: a table of every trial, JSON, and Optuna's plots."""

from __future__ import annotations

import math
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from agents.experiments.output import markdown_table, write_json, write_text
from agents.experiments.output_folder import atomic_write

__all__ = ["write_results"]

STATES = ("complete", "pruned", "fail", "waiting", "running")


def _row(trial) -> dict[str, Any]:
    """One Optuna trial as plain data; ``value`` is the last reported value unless complete."""
    values = trial.intermediate_values
    last = values[max(values)] if values else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value if trial.state.name == "COMPLETE" else last,
        "params": trial.params,
        "batches": len(values),
        "test": {k: v for k, v in trial.user_attrs.items() if k.startswith("test/")},
        "diverged": trial.user_attrs.get("diverged"),
        "retry_of": trial.user_attrs.get("retry_of"),
        "duration_s": None if trial.duration is None else trial.duration.total_seconds(),
    }


def _order(row: dict[str, Any], direction: str) -> tuple:
    """Completed trials best first, then pruned ones by their last value, then the rest."""
    rank = {"complete": 0, "pruned": 1}.get(row["state"], 2)
    value = row["value"] if row["value"] is not None else math.inf
    return rank, value if direction == "minimize" else -value, row["number"]


def _format(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_results(
    out: pathlib.Path,
    study,
    *,
    metric: str,
    direction: str,
    parameters: Sequence[str],
    title: str,
) -> dict[str, Any]:
    """Write results.md, results.json and Optuna's plots for ``study`` into ``out``.

    Args:
        out: the output folder.
        study: the Optuna study.
        metric: the objective's name (a column of the table).
        direction: ``"minimize"`` or ``"maximize"``: which trials are best.
        parameters: the searched hyper-parameters, in the order of the table's columns.
        title: the heading of results.md.

    Returns:
        What results.json holds: ``metric``, ``direction``, ``best`` (the best completed trial
        or None), ``counts`` (trials per state), ``trials`` (every trial, best first),
        ``table`` and ``figures`` (the PNG files written).
    """
    rows = sorted(
        (_row(t) for t in study.get_trials(deepcopy=False)),
        key=lambda row: _order(row, direction),
    )
    tests = sorted({k for row in rows for k in row["test"]})
    table = markdown_table(
        ["trial", "state", metric, *parameters, *tests, "batches"],
        [
            [
                row["number"],
                row["state"],
                _format(row["value"]),
                *(_format(row["params"].get(name)) for name in parameters),
                *(_format(row["test"].get(key)) for key in tests),
                row["batches"],
            ]
            for row in rows
        ],
    )
    complete = [row for row in rows if row["state"] == "complete"]
    counts = {state: sum(row["state"] == state for row in rows) for state in STATES}
    caption = (
        f"{metric} ({direction}; mean over the last 10 % of batches; pruned trials: the last "
        "value reported), best first."
    )
    write_text(out / "results.md", f"# {title}\n\n{caption}\n\n{table}")
    figures = _plot(out, study, metric, len(complete))
    results = {
        "metric": metric,
        "direction": direction,
        "best": complete[0] if complete else None,
        "counts": counts,
        "trials": rows,
        "table": table,
        "figures": figures,
    }
    write_json(out / "results.json", results)
    return results


def _save_png(figure, path: pathlib.Path) -> None:
    """Save a pyplot figure as PNG, atomically and recorded in the output folder's manifest."""
    atomic_write(
        path, lambda file: figure.savefig(file, dpi=100, format="png", bbox_inches="tight")
    )


def _plot(out: pathlib.Path, study, metric: str, complete: int) -> list[str]:
    """Optuna's optimisation history (from 1 completed trial) and parameter importances (from
    2): PNG files in ``out``, their names returned."""
    if complete == 0:
        return []
    import matplotlib.pyplot as plt  # Optuna's matplotlib plots draw with pyplot
    from optuna.visualization import matplotlib as optuna_plots

    plots: dict[str, Callable[..., Axes]] = {
        "optimization_history.png": optuna_plots.plot_optimization_history
    }
    if complete >= 2:
        plots["param_importances.png"] = optuna_plots.plot_param_importances
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is experimental")
            axes = plot(study, target_name=metric)
        figure = cast(Figure, axes.figure)  # a plot's own figure, not a sub-figure
        figure.set_size_inches(8, 4.5)
        _save_png(figure, out / name)
        plt.close(figure)
    return list(plots)
