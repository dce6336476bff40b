"""Learners for recurrent networks and value functions, with Stable-Baselines3-shaped interfaces.

- :class:`BPLambda`: BP(lambda), online synthetic gradients learned by TD(lambda) with traces.
- Baselines sharing its interface: :class:`BPTT`, :class:`TruncatedBPTT`, :class:`DNI`,
  :class:`NoSG`, :class:`RTRL` and the online approximations of RTRL :class:`UORO`,
  :class:`SnAp1`, :class:`EProp` (all by name in :data:`LEARNERS`).
- :class:`TDLambda`: the TD(lambda) reference agent (linear value prediction).
- :mod:`agents.traces`: the TD-error / eligibility-trace functions BP(lambda) and TD(lambda) share.
- Your own learner: subclass :class:`SequenceLearner` (``docs/extending.md``) and register it with
  :func:`register_learner` or an entry point of the group ``bp_lambda.learners``.
"""

from agents.base import BaseLearner
from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.eprop import EProp
from agents.no_sg import NoSG
from agents.registry import LEARNERS, get_learner, register_learner
from agents.rtrl import RTRL
from agents.sequence_learner import SequenceLearner
from agents.snap import SnAp1
from agents.td_lambda import TDLambda
from agents.uoro import UORO

__all__ = [
    "BPTT",
    "DNI",
    "LEARNERS",
    "RTRL",
    "UORO",
    "BPLambda",
    "BaseLearner",
    "EProp",
    "NoSG",
    "SequenceLearner",
    "SnAp1",
    "TDLambda",
    "TruncatedBPTT",
    "get_learner",
    "register_learner",
]
