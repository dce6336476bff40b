"""``render_mode="rgb_array"`` of the sequence envs: the heat map's geometry and colours against
colours computed here from the targets and predictions, and SB3's ``make_vec_env``."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_util import make_vec_env

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.rendering import SequenceImage

WHITE, NAVY = np.array([255, 255, 255]), np.array([8, 48, 107])
RED, BLUE = np.array([178, 24, 43]), np.array([33, 102, 172])
MISSING = np.array([225, 225, 225])

SEQUENCE_ENVS = [
    ("bpl/CopyRepeat-v0", {"pattern_length": 2, "repeats": 2, "bits": 3}),
    ("bpl/LineDraw-v0", {"sequence_length": 5, "end_only": False}),
    ("bpl/SequentialDigits-v0", {}),
    ("bpl/SequentialMNIST-v0", {"pixel_by_pixel": True}),
    ("bpl/AddingProblem-v0", {"sequence_length": 6}),
    ("bpl/CharLM-v0", {"sequence_length": 8}),
    ("bpl/MackeyGlass-v0", {"sequence_length": 7, "noise_std": 0.1}),
]


def sequential(value):
    return np.round(WHITE + np.clip(value, 0, 1) * (NAVY - WHITE)).astype(np.uint8)


def diverging(value, scale):
    v = np.clip(value / scale, -1, 1)
    colour = WHITE + (-v) * (RED - WHITE) if v < 0 else WHITE + v * (BLUE - WHITE)
    return np.round(colour).astype(np.uint8)


def cell(image, geometry, top, step, channel):
    """The pixels of one (step, channel) cell, which must all have one colour."""
    rows = slice(top + channel * geometry.cell_height, top + (channel + 1) * geometry.cell_height)
    columns = slice(step * geometry.cell_width, (step + 1) * geometry.cell_width)
    pixels = image[rows, columns].reshape(-1, 3)
    assert (pixels == pixels[0]).all()
    return pixels[0]


def run(env_id, kwargs, predictions, seed=0):
    """Reset with ``seed``, answer ``len(predictions)`` tokens; return the env and its image."""
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    env.reset(seed=seed)
    for prediction in predictions:
        env.step(np.asarray(prediction, dtype=np.float32))
    return env, env.render()


@pytest.mark.parametrize("env_id, kwargs", SEQUENCE_ENVS, ids=lambda v: str(v))
def test_image_shape_dtype_and_gymnasium_checker(env_id, kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped)
    env.reset(seed=1)
    task = env.unwrapped.task
    image = env.render()
    geometry = SequenceImage(task.sequence_length, task.input_size, task.output_size)
    assert image.dtype == np.uint8 and image.shape == (geometry.height, geometry.width, 3)
    assert geometry.width == task.sequence_length * geometry.cell_width
    top = geometry.predictions_top  # nothing answered yet: every prediction cell is missing
    assert (image[top:] == MISSING).all()
    np.testing.assert_array_equal(image[0, 0], [220, 40, 40])  # token 0 is the next one


def test_copy_repeat_cells_are_the_sigmoid_of_the_logits_and_the_targets():
    env_id, kwargs = SEQUENCE_ENVS[0]
    logits = np.random.default_rng(0).normal(size=(7, 4)) * 3
    env, image = run(env_id, kwargs, logits)
    task, batch = env.unwrapped.task, env.unwrapped._stepper.batch
    geometry = SequenceImage(task.sequence_length, task.input_size, task.output_size)
    for step in range(task.sequence_length):
        for channel in range(task.output_size):
            target = batch.targets[step, 0, channel]
            expected = sequential(target)
            if not batch.scored[step]:  # faded towards white
                expected = np.round(0.4 * (WHITE + target * (NAVY - WHITE)) + 0.6 * WHITE)
            np.testing.assert_array_equal(
                cell(image, geometry, geometry.targets_top, step, channel), expected
            )
            shown = cell(image, geometry, geometry.predictions_top, step, channel)
            if step < len(logits):
                probability = 1 / (1 + np.exp(-logits[step, channel]))
                np.testing.assert_array_equal(shown, sequential(probability))
            else:
                np.testing.assert_array_equal(shown, MISSING)
        for channel in range(task.input_size):
            low, high = env.observation_space.low[channel], env.observation_space.high[channel]
            value = (batch.inputs[step, 0, channel] - low) / (high - low)
            np.testing.assert_array_equal(
                cell(image, geometry, geometry.inputs_top, step, channel), sequential(value)
            )
    np.testing.assert_array_equal(image[0, len(logits) * geometry.cell_width], [220, 40, 40])


def test_digits_predictions_are_softmax_probabilities():
    logits = np.random.default_rng(1).normal(size=(3, 10))
    env, image = run("bpl/SequentialDigits-v0", {}, logits)
    geometry = SequenceImage(8, 8, 10)
    for step, row in enumerate(logits):
        probabilities = np.exp(row) / np.exp(row).sum()
        for channel in range(10):
            np.testing.assert_array_equal(
                cell(image, geometry, geometry.predictions_top, step, channel),
                sequential(probabilities[channel]),
            )


def test_line_draw_values_use_a_diverging_scale_over_targets_and_predictions():
    predictions = np.array([[0.3, -2.0], [0.0, 0.5]])
    env, image = run("bpl/LineDraw-v0", {"sequence_length": 5, "end_only": False}, predictions)
    targets = env.unwrapped._stepper.batch.targets[:, 0]
    scale = max(np.abs(targets).max(), np.abs(predictions).max())
    geometry = SequenceImage(5, 10, 2)
    for step, row in enumerate(predictions):
        for channel, value in enumerate(row):
            np.testing.assert_array_equal(
                cell(image, geometry, geometry.predictions_top, step, channel),
                diverging(value, scale),
            )
    np.testing.assert_array_equal(
        cell(image, geometry, geometry.targets_top, 4, 1), diverging(targets[4, 1], scale)
    )


def test_the_image_changes_with_the_predictions_only_in_the_prediction_panel():
    env_id, kwargs = SEQUENCE_ENVS[0]
    _, first = run(env_id, kwargs, np.ones((5, 4)))
    _, second = run(env_id, kwargs, -np.ones((5, 4)))
    geometry = SequenceImage(9, 5, 4)
    top = geometry.predictions_top
    np.testing.assert_array_equal(first[:top], second[:top])
    assert (first[top:] != second[top:]).any()


def test_vector_env_draws_what_each_single_env_draws():
    env_id, kwargs = SEQUENCE_ENVS[0]
    logits = np.random.default_rng(2).normal(size=(4, 3, 4)).astype(np.float32)
    vector = gym.make_vec(env_id, num_envs=3, render_mode="rgb_array", **kwargs)
    vector.reset(seed=5)
    for step in logits:
        vector.step(step)
    images = vector.render()
    assert isinstance(images, tuple) and len(images) == 3
    for i, image in enumerate(images):
        _, single = run(env_id, kwargs, logits[:, i], seed=5 + i)
        np.testing.assert_array_equal(image, single)


@pytest.mark.parametrize("env_id", sorted(bpl_envs.ENV_IDS))
def test_sb3_make_vec_env_builds_every_env_and_renders_the_tiled_images(env_id):
    vec_env = make_vec_env(env_id, n_envs=4, seed=0)
    assert vec_env.render_mode == "rgb_array"
    observations = vec_env.reset()
    assert observations.shape[0] == 4
    tiled = vec_env.render()
    single = vec_env.get_images()[0]
    assert tiled.dtype == np.uint8 and tiled.shape == (2 * single.shape[0], 2 * single.shape[1], 3)
