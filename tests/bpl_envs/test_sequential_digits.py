"""Sequential digits against scikit-learn's raw data, a re-implemented split and torch's CE."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.sequential_digits import SequentialDigitsEnv, load_digits_pixels
from bpl_envs.splits import stratified_split

DIGITS = load_digits()


def documented_split(labels, test_fraction, seed):
    """The split rule as the docstring states it, written out independently."""
    rng = np.random.default_rng(seed)
    test = []
    for label in sorted(set(labels.tolist())):
        members = [i for i, y in enumerate(labels) if y == label]
        shuffled = rng.permutation(members)
        test.extend(shuffled[: round(test_fraction * len(members))].tolist())
    test = sorted(test)
    train = sorted(set(range(len(labels))) - set(test))
    return train, test


@pytest.mark.parametrize(("split", "fraction", "seed"), [("train", 0.2, 0), ("test", 0.35, 7)])
def test_dataset_is_the_split_of_the_raw_images_over_16(split, fraction, seed):
    env = SequentialDigitsEnv(split=split, test_fraction=fraction, split_seed=seed)
    train, test = documented_split(DIGITS.target, fraction, seed)
    indices = train if split == "train" else test
    inputs, labels = env.dataset()
    assert inputs.dtype == np.float32 and inputs.shape == (len(indices), 8, 8)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(inputs, DIGITS.images[indices] / 16)
    np.testing.assert_array_equal(labels, DIGITS.target[indices])


def test_split_is_stratified_disjoint_and_covers_every_image():
    train, test = stratified_split(DIGITS.target, 0.2, 0)
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    counts = np.bincount(DIGITS.target)
    np.testing.assert_array_equal(
        np.bincount(DIGITS.target[test]), [round(0.2 * c) for c in counts]
    )
    assert (len(train), len(test)) == (1438, 359)
    other = stratified_split(DIGITS.target, 0.2, 1)[1]
    assert not np.array_equal(test, other)


def test_each_sequence_streams_the_rows_of_a_uniformly_drawn_image_of_the_split():
    env = SequentialDigitsEnv(split="test")
    _, test = documented_split(DIGITS.target, 0.2, 0)
    rng = np.random.default_rng(21)  # the generator reset(seed=21) creates
    logits = np.random.default_rng(0).normal(size=(8, 10)) * 3
    for sequence in range(4):
        obs, _ = env.reset(seed=21 if sequence == 0 else None)
        image = test[rng.integers(len(test))]
        rows, infos = [obs], []
        for t in range(8):
            obs, reward, terminated, _, info = env.step(logits[t])
            rows.append(obs)
            infos.append((reward, terminated, info))
        np.testing.assert_array_equal(np.array(rows[:8]), DIGITS.images[image] / 16)
        np.testing.assert_array_equal(rows[8], np.zeros(8, np.float32))
        one_hot = np.eye(10)[DIGITS.target[image]]
        for t, (_, terminated, info) in enumerate(infos):
            np.testing.assert_array_equal(info["target"], one_hot)
            assert info["scored"] == terminated == (t == 7)
        cross_entropy = F.cross_entropy(
            torch.tensor(logits[7]), torch.tensor(DIGITS.target[image])
        ).item()
        assert infos[7][2]["loss"] == pytest.approx(cross_entropy, rel=1e-12)
        assert infos[7][0] == -infos[7][2]["loss"]
        assert [r for r, _, _ in infos[:7]] == [0.0] * 7


def test_data_are_loaded_once_per_process():
    load_digits_pixels.cache_clear()
    first = SequentialDigitsEnv()
    second = gym.make_vec("bpl/SequentialDigits-v0", num_envs=2, split="test")
    assert load_digits_pixels.cache_info().misses == 1
    assert load_digits_pixels.cache_info().hits >= 1
    assert first.dataset()[0].shape[0] + second.dataset()[0].shape[0] == 1797
    pixels, _ = load_digits_pixels()
    assert not pixels.flags.writeable


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"split": "validation"}, ValueError, r"split must be 'train' or 'test', got 'validation'"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be a number in \(0, 1\), got 1"),
        ({"test_fraction": "0.2"}, TypeError, r"test_fraction must be a number in \(0, 1\)"),
        ({"test_fraction": 1e-4}, ValueError, r"test_fraction=0.0001 leaves an empty split"),
        ({"split_seed": -3}, ValueError, r"split_seed must be an int >= 0, got -3"),
    ],
)
def test_invalid_arguments_are_rejected_with_the_argument_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        SequentialDigitsEnv(**kwargs)
    with pytest.raises(error, match=message):
        gym.make_vec("bpl/SequentialDigits-v0", num_envs=2, **kwargs)


def test_ansi_render_draws_the_image_label_and_latest_guess():
    env = SequentialDigitsEnv(render_mode="ansi")
    env.reset(seed=0)
    image_rows = [row for row in env.render().splitlines() if row.startswith("|")]
    assert len(image_rows) == 8 and all(len(row) == 10 for row in image_rows)
    logits = np.zeros(10, np.float32)
    logits[4] = 5.0
    label = int(np.argmax(env.step(logits)[4]["target"]))
    text = env.render()
    p = np.exp(5) / (np.exp(5) + 9)
    assert text.splitlines()[0].startswith(f"SequentialDigits (train): label {label}; 1 of 8")
    assert text.splitlines()[-1] == f"latest prediction (t=0): class 4 with p={p:.2f}"
