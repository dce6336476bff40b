"""Evaluate a learner on a whole fixed set of sequences (e.g. a test split), in batches."""

from __future__ import annotations

import numpy as np

from bpl_envs.checks import check_int

__all__ = ["evaluate_sequences", "last_step_targets"]


def last_step_targets(labels: np.ndarray, n_classes: int, sequence_length: int) -> np.ndarray:
    """One-hot targets on the last token of each sequence (zeros elsewhere), as "ce" tasks
    scored at the last step use them.

    Args:
        labels: (N,) integer class labels in [0, n_classes).
        n_classes: number of classes (the learner's output size).
        sequence_length: T.

    Returns:
        (N, T, n_classes) float32 targets.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape} and dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, n_classes={n_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    targets = np.zeros((labels.size, sequence_length, n_classes), dtype=np.float32)
    targets[np.arange(labels.size), -1, labels] = 1.0
    return targets


def evaluate_sequences(
    learner,
    inputs: np.ndarray,
    targets: np.ndarray,
    scored: np.ndarray | None = None,
    *,
    batch_size: int = 256,
) -> dict[str, float]:
    """Run ``learner.predict`` over every sequence and score its predictions.

    Sequences are fed ``batch_size`` at a time, one token per ``predict`` call with the state it
    returned, exactly as the learner would meet them in an env. The loss per scored step is the
    task's loss (``learner.loss``, the function the envs pay as reward) in float64.

    Args:
        learner: anything with ``predict(obs (B, n_in), state) -> (prediction (B, n_out), state)``
            and ``loss`` / ``task`` attributes, e.g. every recurrent learner in :mod:`agents`.
        inputs: (N, T, n_in) tokens.
        targets: (N, T, n_out) targets (one-hot for "ce").
        scored: (T,) or (N, T) booleans marking the steps that carry a loss (default: all).
        batch_size: sequences per ``predict`` batch.

    Returns:
        ``{"loss": mean loss over scored steps, "n_sequences": N, "n_scored": scored steps}``
        plus ``"accuracy"`` (fraction of scored steps whose arg-max prediction is the target's
        arg-max) when the loss is "ce".
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    task = learner.task
    if inputs.ndim != 3 or inputs.shape[2] != task.input_size:
        raise ValueError(
            f"inputs must have shape (N, T, input_size={task.input_size}), got {inputs.shape}"
        )
    if targets.shape != (*inputs.shape[:2], task.output_size):
        raise ValueError(
            f"targets must have shape (N, T, output_size) = "
            f"{(*inputs.shape[:2], task.output_size)}, got {targets.shape}"
        )
    n_sequences, steps = inputs.shape[:2]
    scored = np.ones(steps, bool) if scored is None else np.asarray(scored)
    if scored.dtype != bool or scored.shape not in ((steps,), (n_sequences, steps)):
        raise ValueError(
            f"scored must be a boolean array of shape ({steps},) or "
            f"{(n_sequences, steps)}, got dtype {scored.dtype} and shape "
            f"{scored.shape}"
        )
    scored = np.broadcast_to(scored, (n_sequences, steps))
    if not scored.any():
        raise ValueError("scored marks no step: there is nothing to evaluate")
    check_int("batch_size", batch_size, minimum=1)

    total_loss, hits = 0.0, 0
    for start in range(0, n_sequences, batch_size):
        rows = slice(start, start + batch_size)
        state = None
        for t in range(steps):
            prediction, state = learner.predict(inputs[rows, t], state)
            mask = scored[rows, t]
            if not mask.any():
                continue
            target = targets[rows, t][mask].astype(np.float64)
            logits = prediction[mask].astype(np.float64)
            total_loss += float(learner.loss.value(logits, target).sum())
            hits += int((logits.argmax(-1) == target.argmax(-1)).sum())
    n_scored = int(scored.sum())
    result = {"loss": total_loss / n_scored, "n_sequences": n_sequences, "n_scored": n_scored}
    if task.loss == "ce":
        result["accuracy"] = hits / n_scored
    return result
