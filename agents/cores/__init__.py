"""Recurrent cores: the transition s' = F(x, s; θ) that BP(λ) and its baselines train.

=====================  ============================================================
module                 what it holds
=====================  ============================================================
:mod:`.base`           :class:`RecurrentCore`, the interface every core implements,
                       and the :class:`JacobianOperator` it hands the learners
:mod:`.analytic`       :class:`AnalyticCore`, the built-in cores' common base
:mod:`.rnn`            :class:`RNNCore` (tanh or identity)
:mod:`.lstm`           :class:`LSTMCore` (state [h, c])
:mod:`.gru`            :class:`GRUCore` (torch's GRUCell conventions)
:mod:`.stacked`        :class:`StackedCore`: L layers of one built-in kind
:mod:`.functional`     :class:`FunctionalCore`: any torch cell, derivatives by torch.func
:mod:`.initialisation` ``recurrent_init`` ("uniform", "orthogonal"), ``spectral_radius``
:mod:`.factory`        :func:`make_core` by name, and the learners' ``core=`` argument
=====================  ============================================================
"""

from agents.cores.analytic import AnalyticCore
from agents.cores.base import DenseJacobianOperator, JacobianOperator, RecurrentCore
from agents.cores.factory import CORE_DEFAULTS, CORE_KINDS, core_name, make_core
from agents.cores.functional import FunctionalCore, FunctionalStepCache
from agents.cores.gru import GRUCore, GRUStepCache
from agents.cores.initialisation import RECURRENT_INITS
from agents.cores.lstm import LSTMCore, LSTMStepCache
from agents.cores.rnn import RNN_ACTIVATIONS, RNNCore, RNNStepCache
from agents.cores.stacked import StackedCore, StackedStepCache

__all__ = [
    "CORE_DEFAULTS",
    "CORE_KINDS",
    "RECURRENT_INITS",
    "RNN_ACTIVATIONS",
    "AnalyticCore",
    "DenseJacobianOperator",
    "FunctionalCore",
    "FunctionalStepCache",
    "GRUCore",
    "GRUStepCache",
    "JacobianOperator",
    "LSTMCore",
    "LSTMStepCache",
    "RNNCore",
    "RNNStepCache",
    "RecurrentCore",
    "StackedCore",
    "StackedStepCache",
    "core_name",
    "make_core",
]
