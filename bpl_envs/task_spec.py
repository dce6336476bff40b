"""What a learner needs to know about a task, discoverable from the env alone."""

from __future__ import annotations

from dataclasses import dataclass

from bpl_envs.losses import LOSSES

SCORINGS = ("last", "all", "window", "custom")


@dataclass(frozen=True)
class TaskSpec:
    """Sizes, loss and scoring of a supervised sequence task.

    Every ``bpl`` sequence env (single and vector) exposes one as ``env.unwrapped.task`` (through
    wrappers: ``env.get_wrapper_attr("task")``; on a vector env: ``vec_env.task``).

    Attributes:
        input_size: size of one observation token x_t.
        output_size: size of one prediction (the action) and of ``info["target"]``.
        loss: name of the per-step loss in :data:`bpl_envs.losses.LOSSES` (``"mse"``, ``"bce"``
            or ``"ce"``); ``reward = -loss`` on scored steps.
        scoring: which steps carry a loss: ``"last"`` (only the final step), ``"all"`` (every
            step), ``"window"`` (a contiguous window ending at the final step) or ``"custom"``
            (a rule of the task, e.g. an env wrapped by ``SupervisedTaskWrapper``). Each step's
            ``info["scored"]`` says it exactly.
        sequence_length: number of tokens T in the current sequences (it can change between
            sequences, e.g. under a curriculum).
    """

    input_size: int
    output_size: int
    loss: str
    scoring: str
    sequence_length: int

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        for name in ("input_size", "output_size", "sequence_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
