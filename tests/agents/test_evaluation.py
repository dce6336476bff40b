"""evaluate_sequences against losses and accuracies worked out by hand."""

import math

import numpy as np
import pytest

from agents.evaluation import evaluate_sequences, last_step_targets
from bpl_envs.losses import get_loss
from bpl_envs.task_spec import TaskSpec


class RunningSum:
    """A stand-in learner: its state is the running sum of the tokens, its prediction the state.

    It records the batch size of every predict call."""

    def __init__(self, loss, size=2):
        self.task = TaskSpec(size, size, loss, "all", 3)
        self.loss = get_loss(loss)
        self.batches = []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):  # noqa: ARG002
        state = np.zeros_like(observation) if state is None else state
        self.batches.append(len(observation))
        new_state = state + observation
        return new_state.astype(np.float32), new_state


# Three sequences of T = 2 tokens; running sums at t = 1: [1, 0], [0, 2], [ln 3, 0]
INPUTS = np.array(
    [
        [[0.0, 0.0], [1.0, 0.0]],
        [[0.0, 1.0], [0.0, 1.0]],
        [[0.0, 0.0], [math.log(3.0), 0.0]],
    ]
)
LABELS = np.array([0, 0, 0])  # arg-max of those sums: 0, 1, 0 (the second is wrong)


def test_cross_entropy_and_accuracy_at_the_last_step_by_hand():
    targets = last_step_targets(LABELS, 2, 2)
    result = evaluate_sequences(RunningSum("ce"), INPUTS, targets, np.array([False, True]))
    # -log softmax(p)[0]: log(1 + e^(p1 - p0)) per sequence
    losses = [math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(2.0)), math.log(1 + 1 / 3)]
    assert result["loss"] == pytest.approx(sum(losses) / 3, rel=1e-6)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["n_sequences"] == 3 and result["n_scored"] == 3


def test_mse_over_every_step_by_hand_and_no_accuracy():
    targets = np.zeros((3, 2, 2))
    targets[:, :, 1] = 1.0
    result = evaluate_sequences(RunningSum("mse"), INPUTS, targets)
    # mean_k (p_k - y_k)^2 at each of the 6 steps
    step_losses = [0.5, 1.0, 0.0, 0.5, 0.5, 0.5 * (math.log(3.0) ** 2 + 1)]
    assert result["loss"] == pytest.approx(sum(step_losses) / 6, rel=1e-6)
    assert "accuracy" not in result and result["n_scored"] == 6


def test_per_sequence_scoring_and_batching_do_not_change_the_result():
    targets = last_step_targets(LABELS, 2, 2)
    scored = np.array([[False, True], [False, False], [False, True]])
    learner = RunningSum("ce")
    small = evaluate_sequences(learner, INPUTS, targets, scored, batch_size=2)
    assert learner.batches == [2, 2, 1, 1]
    losses = [math.log(1 + math.exp(-1.0)), math.log(1 + 1 / 3)]
    assert small["loss"] == pytest.approx(sum(losses) / 2, rel=1e-6)
    assert small["accuracy"] == 1.0 and small["n_scored"] == 2
    assert evaluate_sequences(RunningSum("ce"), INPUTS, targets, scored) == pytest.approx(small)


def test_last_step_targets_are_one_hot_at_the_end_only():
    targets = last_step_targets(np.array([2, 0]), 3, 4)
    assert targets.shape == (2, 4, 3) and targets.dtype == np.float32
    assert targets[:, :3].sum() == 0
    np.testing.assert_array_equal(targets[:, 3], [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inputs": np.zeros((3, 2))}, "inputs must have shape"),
        ({"inputs": np.zeros((3, 2, 5))}, "inputs must have shape"),
        ({"targets": np.zeros((3, 2, 3))}, "targets must have shape"),
        ({"scored": np.array([0, 1])}, "scored must be a boolean array"),
        ({"scored": np.array([True, False, True])}, "scored must be a boolean array"),
        ({"scored": np.array([False, False])}, "marks no step"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    arguments = {"inputs": INPUTS, "targets": np.zeros((3, 2, 2)), **kwargs}
    batch_size = arguments.pop("batch_size", 256)
    with pytest.raises(ValueError, match=message):
        evaluate_sequences(RunningSum("mse"), **arguments, batch_size=batch_size)


@pytest.mark.parametrize(
    "labels, message",
    [(np.array([0.0, 1.0]), "integer"), (np.array([0, 3]), r"\[0, n_classes=3\)")],
)
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        last_step_targets(labels, 3, 2)
