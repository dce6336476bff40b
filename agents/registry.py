"""Every learner by name, so a runner (the ``bpl`` CLI, a comparison script) can swap one for
another: ``get_learner("dni")(env, n=3, **common_hyperparameters)``. All but ``td_lambda`` are
recurrent learners (:class:`~agents.sequence_learner.SequenceLearner`); ``td_lambda`` predicts
values on a Markov reward process such as ``bpl/RandomWalk-v0``."""

from __future__ import annotations

from dataclasses import dataclass

from agents.base import BaseLearner
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.no_sg import NoSG
from agents.rtrl import RTRL
from agents.td_lambda import TDLambda

__all__ = ["LEARNERS", "LearnerEntry", "get_learner"]


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner: its class and a one-line description."""

    cls: type[BaseLearner]
    description: str


LEARNERS: dict[str, LearnerEntry] = {
    "bp_lambda": LearnerEntry(
        BPLambda, "BP(lambda): online synthetic gradients learned by TD(lambda) with traces"
    ),
    "bptt": LearnerEntry(BPTT, "full backpropagation through time, one update per batch"),
    "tbptt": LearnerEntry(
        TruncatedBPTT, "truncated BPTT: backpropagation within chunks of n tokens"
    ),
    "dni": LearnerEntry(
        DNI, "truncated BPTT plus synthetic gradients regressed on n-step bootstrapped targets"
    ),
    "nosg": LearnerEntry(NoSG, "no synthetic gradient: immediate loss, one-step derivatives"),
    "rtrl": LearnerEntry(RTRL, "real-time recurrent learning: exact forward-mode gradient"),
    "td_lambda": LearnerEntry(
        TDLambda, "TD(lambda) value prediction on a Markov reward process (e.g. the random walk)"
    ),
}
"""Name -> learner, for every learner of :mod:`agents`."""


def get_learner(name: str) -> type[BaseLearner]:
    """The learner class registered as ``name`` (one of :data:`LEARNERS`)."""
    try:
        return LEARNERS[name].cls
    except (KeyError, TypeError):
        raise ValueError(f"unknown learner {name!r}; choose one of {sorted(LEARNERS)}") from None
