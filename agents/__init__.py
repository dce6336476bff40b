"""Learners for recurrent networks and value functions, with Stable-Baselines3-shaped interfaces.

- :class:`BPLambda`: BP(lambda), online synthetic gradients learned by TD(lambda) with traces.
- Baselines sharing its interface: :class:`BPTT`, :class:`TruncatedBPTT`, :class:`DNI`,
  :class:`NoSG`, :class:`RTRL` (all by name in :data:`LEARNERS`).
- :class:`TDLambda`: the TD(lambda) reference agent (linear value prediction).
- :mod:`agents.traces`: the TD-error / eligibility-trace functions BP(lambda) and TD(lambda) share.
"""

from agents.bp_lambda import BPLambda
from agents.bptt import BPTT, DNI, TruncatedBPTT
from agents.no_sg import NoSG
from agents.registry import LEARNERS, get_learner
from agents.rtrl import RTRL
from agents.td_lambda import TDLambda

__all__ = [
    "BPTT",
    "DNI",
    "LEARNERS",
    "RTRL",
    "BPLambda",
    "NoSG",
    "TDLambda",
    "TruncatedBPTT",
    "get_learner",
]
