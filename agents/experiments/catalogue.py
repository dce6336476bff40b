"""The experiments ``bpl reproduce`` knows: name -> where the code and preset live.

Each entry names the module of the experiment (see :mod:`agents.experiments` for what a module
provides), its packaged preset (``agents/configs/NAME.yaml``; ``NAME_quick.yaml`` for
``--quick``) and the title and description that ``results.md`` and ``bpl list`` show.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "Experiment", "experiment_module"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproducible experiment: where its code and preset live and what it measures.

    Attributes:
        options: the names of the experiment's own options (``mnist_root``), passed to its
            module's ``preset_for`` and ``configure``.
    """

    module: str
    preset: str
    title: str
    description: str
    options: tuple[str, ...] = ()


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
        "test accuracy of BP(λ) and the baselines on bpl/SequentialDigits-v0",
    ),
    "seqmnist": Experiment(
        "agents.experiments.digits",
        "seqmnist",
        "Sequential MNIST: test accuracy per learner",
        "the paper's seqMNIST comparison on the bundled 5,000-image MNIST subset (the full "
        "MNIST with --mnist-root)",
        options=("mnist_root",),
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


def experiment_module(name: str) -> tuple[Experiment, ModuleType]:
    """The experiment ``name`` and its module (imported).

    Raises:
        ValueError: ``name`` is not one of :data:`EXPERIMENTS`.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    return experiment, importlib.import_module(experiment.module)
