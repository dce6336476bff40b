"""Learners for recurrent networks and value functions, with Stable-Baselines3-shaped interfaces.

- :class:`~agents.bp_lambda.BPLambda`: BP(lambda), online synthetic gradients learned by TD.
- :class:`~agents.td_lambda.TDLambda`: the TD(lambda) reference agent (linear value prediction).
- :mod:`agents.traces`: the TD-error / eligibility-trace functions both share.
"""

from agents.bp_lambda import BPLambda
from agents.td_lambda import TDLambda

__all__ = ["BPLambda", "TDLambda"]
