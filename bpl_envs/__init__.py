"""Streaming Gymnasium environments for the sequence tasks of the BP(lambda) paper.

Importing this package registers every task under the ``bpl`` namespace, each with a single env
(``gym.make``) and a natively batched vector env (``gym.make_vec``)::

    import gymnasium as gym
    import bpl_envs  # noqa: F401  (registers the ids)

    env = gym.make("bpl/CopyRepeat-v0")
    vec_env = gym.make_vec("bpl/CopyRepeat-v0", num_envs=64)
"""

from gymnasium.envs.registration import register, registry

from bpl_envs.losses import LOSSES, Loss, get_loss
from bpl_envs.supervised import SupervisedTaskWrapper
from bpl_envs.task_spec import TaskSpec
from bpl_envs.vocabulary import CharVocabulary

__all__ = [
    "ENV_IDS",
    "LOSSES",
    "CharVocabulary",
    "Loss",
    "SupervisedTaskWrapper",
    "TaskSpec",
    "get_loss",
]

# id -> (module, single env class, vector env class, one-line description)
_ENVS = {
    "bpl/CopyRepeat-v0": (
        "copy_repeat",
        "CopyRepeatEnv",
        "CopyRepeatVectorEnv",
        "Graves et al.'s copy-repeat: repeat N random bit vectors R times (BCE on the answer).",
    ),
    "bpl/LineDraw-v0": (
        "line_draw",
        "LineDrawEnv",
        "LineDrawVectorEnv",
        "The paper's toy task: a cue at t=0, draw a 2-D line, MSE at the last step.",
    ),
    "bpl/SequentialDigits-v0": (
        "sequential_digits",
        "SequentialDigitsEnv",
        "SequentialDigitsVectorEnv",
        "scikit-learn's 8x8 digits row by row, 10-way cross-entropy at the last step.",
    ),
    "bpl/SequentialMNIST-v0": (
        "sequential_mnist",
        "SequentialMNISTEnv",
        "SequentialMNISTVectorEnv",
        "MNIST row by row (or pixel by pixel) from local IDX files, cross-entropy at the end.",
    ),
    "bpl/AddingProblem-v0": (
        "adding_problem",
        "AddingProblemEnv",
        "AddingProblemVectorEnv",
        "Hochreiter & Schmidhuber's adding problem: sum the two marked values (MSE at the end).",
    ),
    "bpl/CharLM-v0": (
        "char_lm",
        "CharLMEnv",
        "CharLMVectorEnv",
        "Next-character prediction on a text (Python's docs by default), cross-entropy per step.",
    ),
    "bpl/MackeyGlass-v0": (
        "mackey_glass",
        "MackeyGlassEnv",
        "MackeyGlassVectorEnv",
        "One-step-ahead prediction of the chaotic Mackey-Glass series (tau = 17), MSE per step.",
    ),
    "bpl/RandomWalk-v0": (
        "random_walk",
        "RandomWalkEnv",
        "RandomWalkVectorEnv",
        "Sutton & Barto's random-walk Markov reward process, for TD(lambda).",
    ),
}

ENV_IDS: dict[str, str] = {env_id: spec[3] for env_id, spec in _ENVS.items()}
"""Every registered id with a one-line description."""

for _env_id, (_module, _single, _vector, _description) in _ENVS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=f"bpl_envs.{_module}:{_single}",
            vector_entry_point=f"bpl_envs.{_module}:{_vector}",
        )
