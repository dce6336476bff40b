"""The paper's experiments, reproducible from the command line (``bpl reproduce NAME``).

One module per experiment (:mod:`~agents.experiments.toy`, :mod:`~agents.experiments.digits`,
:mod:`~agents.experiments.copy_repeat`, :mod:`~agents.experiments.random_walk`; beyond the paper
:mod:`~agents.experiments.adding`, :mod:`~agents.experiments.charlm` and
:mod:`~agents.experiments.mackey_glass`, which share :mod:`~agents.experiments.held_out`) and the
side-by-side figure (:mod:`~agents.experiments.compare`), plus the shared parts: output folders
and tables (:mod:`~agents.experiments.output`), YAML presets
(:mod:`~agents.experiments.config`), training runs (:mod:`~agents.experiments.training`),
hyper-parameter parsing (:mod:`~agents.experiments.hyperparameters`), parallel cells
(:mod:`~agents.experiments.parallel`) and grids (:mod:`~agents.experiments.sweep`).

Every experiment reads a preset from ``agents/configs/`` (``NAME.yaml``, or ``NAME_quick.yaml``
for ``--quick``) and writes ``results.md`` (a table, mean ± std over seeds), ``results.json``
(the same numbers with the configuration used) and PNG figures into its output folder.

An experiment module provides ``check(config)`` (raise on a bad preset before anything runs)
and ``run(config, out, seeds, *, progress, workers) -> (markdown table, JSON data, figure
paths)``; one with options (``digits``: ``mnist_root``) also provides ``preset_for`` and
``configure``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import time
from typing import Any

from agents.experiments.config import load_config
from agents.experiments.output import prepare_output_dir, write_json, write_text
from bpl_envs.checks import check_int

__all__ = ["EXPERIMENTS", "Experiment", "reproduce"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproducible experiment: where its code and preset live and what it measures."""

    module: str
    preset: str
    title: str
    description: str


EXPERIMENTS: dict[str, Experiment] = {
    "toy": Experiment(
        "agents.experiments.toy",
        "toy",
        "Toy task: synthetic-gradient alignment against λ",
        "alignment of g(s_t) with the true future gradient vs λ on LineDraw, frozen and "
        "learning RNN, T = 10, 30, 60",
    ),
    "digits": Experiment(
        "agents.experiments.digits",
        "digits",
        "Sequential digits: test accuracy per learner",
        "test accuracy of BP(λ) and the baselines on bpl/SequentialDigits-v0 (sequential MNIST "
        "with --mnist-root)",
    ),
    "copy-repeat": Experiment(
        "agents.experiments.copy_repeat",
        "copy_repeat",
        "Copy-repeat: curriculum length reached per learner",
        "sequence length reached on the copy-repeat curriculum within a budget, per learner",
    ),
    "random-walk": Experiment(
        "agents.experiments.random_walk",
        "random_walk",
        "TD(λ) on the 19-state random walk: RMS error against α",
        "TD(λ) RMS error vs α for each λ on Sutton & Barto's random walk (accumulate and true "
        "online traces)",
    ),
    "adding": Experiment(
        "agents.experiments.adding",
        "adding",
        "Adding problem: held-out MSE per learner",
        "held-out MSE of BP(λ) and the baselines on bpl/AddingProblem-v0 (T = 50) against the "
        "chance level 1/6",
    ),
    "charlm": Experiment(
        "agents.experiments.charlm",
        "charlm",
        "Character-level language model: held-out bits per character per learner",
        "held-out bits per character of BP(λ) and the baselines on bpl/CharLM-v0 (Python's "
        "docs) against the unigram entropy",
    ),
    "mackey-glass": Experiment(
        "agents.experiments.mackey_glass",
        "mackey_glass",
        "Mackey-Glass: held-out one-step-ahead MSE per learner",
        "held-out one-step MSE of BP(λ) and the baselines on bpl/MackeyGlass-v0 (tau = 17) "
        "against persistence",
    ),
    "compare": Experiment(
        "agents.experiments.compare",
        "compare",
        "TD(λ) and BP(λ) side by side",
        "TD(λ) RMS error vs α on the random walk next to BP(λ) alignment vs the synthesiser's "
        "learning rate on the toy task, same λ grid (also `bpl compare`)",
    ),
}
"""Experiment name (as typed after ``bpl reproduce``) -> :class:`Experiment`."""


def reproduce(
    name: str,
    *,
    out: str | pathlib.Path,
    quick: bool = False,
    seeds: int | None = None,
    config: str | None = None,
    force: bool = False,
    progress: bool = True,
    workers: int = 1,
    **options: Any,
) -> dict[str, Any]:
    """Run experiment ``name`` and write its table, JSON and figures into ``out``.

    Args:
        name: one of :data:`EXPERIMENTS`.
        out: output folder (refused if it holds files, unless ``force``).
        quick: use the ``_quick`` preset (minutes instead of hours).
        seeds: number of seeds (0 .. seeds-1); default: the preset's.
        config: a YAML file replacing the packaged preset.
        force: replace the content of an existing ``out``.
        progress: progress bars.
        workers: parallel processes for the experiment's independent runs.
        options: experiment-specific options (``mnist_root`` for ``digits``).

    Returns:
        What ``results.json`` holds.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    module = importlib.import_module(experiment.module)
    options = {k: v for k, v in options.items() if v is not None}
    if options and not hasattr(module, "configure"):
        raise ValueError(f"experiment {name!r} takes no options, got {sorted(options)}")
    preset = experiment.preset + ("_quick" if quick else "")
    if hasattr(module, "preset_for"):
        preset = module.preset_for(preset, **options)
    preset = config or preset
    settings = load_config(preset)
    if "experiment" not in settings:
        raise ValueError(f"{preset}: an experiment config needs an `experiment:` section")
    if seeds is None:
        seeds = settings["experiment"]["seeds"]
    check_int("seeds", seeds, minimum=1)
    if hasattr(module, "configure"):
        settings = module.configure(settings, **options)
    module.check(settings)  # every run validated before the folder is touched
    out = prepare_output_dir(out, force)
    seed_list = list(range(seeds))

    start = time.perf_counter()
    table, data, figures = module.run(settings, out, seed_list, progress=progress, workers=workers)
    elapsed = time.perf_counter() - start

    figure_names = [pathlib.Path(f).name for f in figures]
    command = "bpl compare" if name == "compare" else f"bpl reproduce {name}"
    header = (
        f"# {experiment.title}\n\n"
        f"`{command}{' --quick' if quick else ''}`: preset `{preset}`, seeds "
        f"{seed_list}, {elapsed:.0f} s with {workers} worker(s).\n\n"
    )
    images = "".join(f"\n![{n}]({n})\n" for n in figure_names)
    write_text(out / "results.md", header + table + images)
    result = {
        "experiment": name,
        "title": experiment.title,
        "preset": str(preset),
        "quick": quick,
        "seeds": seed_list,
        "workers": workers,
        "elapsed_s": round(elapsed, 1),
        "config": settings,
        **data,
        "figures": figure_names,
        "table": table,
    }
    write_json(out / "results.json", result)
    return result
