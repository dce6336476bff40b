"""The paper's experiments, reproducible from the command line (``bpl reproduce NAME``).

One module per experiment (:mod:`~agents.experiments.toy`, :mod:`~agents.experiments.digits`
for digits and seqmnist, :mod:`~agents.experiments.copy_repeat`,
:mod:`~agents.experiments.random_walk`; beyond the paper :mod:`~agents.experiments.adding`,
:mod:`~agents.experiments.charlm` and :mod:`~agents.experiments.mackey_glass`, which share
:mod:`~agents.experiments.held_out`) and the side-by-side figure
(:mod:`~agents.experiments.compare`), plus the shared parts:

- reproductions: the experiment registry (:mod:`~agents.experiments.catalogue`), resuming and
  the results files (:mod:`~agents.experiments.reproduction`), resumable cells
  (:mod:`~agents.experiments.cells`), run folders made elsewhere adopted as cells
  (:mod:`~agents.experiments.adoption`),
  comparisons of learners (:mod:`~agents.experiments.comparison`), README tables from results
  (:mod:`~agents.experiments.report`);
- training runs: their configuration (:mod:`~agents.experiments.run_config`), building the env
  and learner (:mod:`~agents.experiments.building`), logs and plots
  (:mod:`~agents.experiments.run_logs`), run folders, checkpoints and resume
  (:mod:`~agents.experiments.training`);
- output folders and tables (:mod:`~agents.experiments.output`), YAML presets
  (:mod:`~agents.experiments.config`), hyper-parameter parsing
  (:mod:`~agents.experiments.hyperparameters`), parallel cells
  (:mod:`~agents.experiments.parallel`) and grids (:mod:`~agents.experiments.sweep`).

Every experiment reads a preset from ``agents/configs/`` (``NAME.yaml``, or ``NAME_quick.yaml``
for ``--quick``) and writes ``results.md`` (a table, mean ± std over seeds), ``results.json``
(the same numbers with the configuration used) and PNG figures into its output folder.

An experiment module provides ``check(config)`` (raise on a bad preset before anything runs)
and either ``make_cells(config, seeds)``, ``evaluate(folder, run_config, **evaluation)`` and
``summarise(config, seeds, results, out) -> (markdown table, JSON data, figure paths)`` (a
resumable experiment: one run folder per cell) or ``run(config, out, seeds, *, progress,
workers) -> (table, data, figures)``. One with options (``seqmnist``: ``mnist_root``) also
provides ``preset_for`` and ``configure``; one whose budget is not the top-level run's
``updates`` provides ``with_updates(config, updates)``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EXPERIMENTS", "Experiment", "reproduce", "resume_reproduction"]


def __getattr__(name: str) -> Any:
    """The names of :mod:`agents.experiments.reproduction`, imported on first use: the learner
    registry imports :mod:`agents.experiments.hyperparameters`, and reproductions import the
    registry, so importing them with the package would be circular."""
    if name in __all__:
        return getattr(importlib.import_module("agents.experiments.reproduction"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
