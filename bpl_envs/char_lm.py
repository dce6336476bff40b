"""Character-level language modelling: predict the next character of a text, one per step."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from bpl_envs.checks import check_int, check_open_fraction
from bpl_envs.losses import NATS_PER_BIT
from bpl_envs.sequence import SequenceBatch, SequenceEnv, SequenceSource, SequenceVectorEnv
from bpl_envs.splits import check_split
from bpl_envs.vocabulary import CharVocabulary

__all__ = [
    "DEFAULT_MIN_COUNT",
    "CharLMEnv",
    "CharLMSequences",
    "CharLMVectorEnv",
    "load_text",
    "python_docs_text",
]

DEFAULT_MIN_COUNT = 5
"""Characters seen fewer times than this in the train split map to the unknown symbol."""


@lru_cache(maxsize=1)
def python_docs_text() -> str:
    """The default corpus: CPython's documentation topics (``pydoc_data.topics``, shipped with
    Python), every topic text joined by a newline in sorted key order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


@lru_cache(maxsize=4)
def _read_utf8(stamped_path: tuple[str, int, int]) -> str:
    """The text of ``(path, modification time in ns, size)``: the stamp is part of the cache
    key, so an edited file is read again."""
    path = stamped_path[0]
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"text_path {path!r} is not valid UTF-8: {error}") from None


def load_text(text_path: str | os.PathLike | None) -> str:
    """The text of ``text_path`` (UTF-8), or :func:`python_docs_text` for None (cached)."""
    if text_path is None:
        return python_docs_text()
    if not isinstance(text_path, str | os.PathLike):
        raise TypeError(
            f"text_path must be a path (str or os.PathLike) or None, got "
            f"{type(text_path).__name__}: {text_path!r}"
        )
    path = pathlib.Path(text_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"text_path {str(text_path)!r} is not a file")
    stat = path.stat()
    return _read_utf8((str(path), stat.st_mtime_ns, stat.st_size))


def _split_text(text: str, test_fraction: float) -> tuple[str, str]:
    """``(train, test)``: the text before and after character ``round(n (1 - test_fraction))``."""
    cut = round(len(text) * (1.0 - test_fraction))
    return text[:cut], text[cut:]


@lru_cache(maxsize=8)
def _encoded_splits(
    text: str, test_fraction: float, vocabulary: CharVocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """The train and test splits as read-only int64 index arrays (cached per process)."""
    train, test = (vocabulary.encode(part) for part in _split_text(text, test_fraction))
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


def _check_vocabulary(vocabulary: CharVocabulary | None, min_count: int | None) -> None:
    if vocabulary is not None and not isinstance(vocabulary, CharVocabulary):
        raise TypeError(
            f"vocabulary must be a bpl_envs.CharVocabulary or None, got {type(vocabulary).__name__}"
        )
    if vocabulary is not None and min_count is not None:
        raise ValueError(
            f"min_count={min_count!r} only applies when the vocabulary is built from the text; "
            "with vocabulary=... leave min_count=None"
        )


class CharLMSequences(SequenceSource):
    """The language-model dynamics shared by :class:`CharLMEnv` and :class:`CharLMVectorEnv`.

    A draw is the index of a window's first character in the split (an int).
    """

    loss = "ce"
    scoring = "all"

    def __init__(
        self,
        sequence_length: int = 50,
        text_path: str | os.PathLike | None = None,
        split: str = "train",
        test_fraction: float = 0.1,
        min_count: int | None = None,
        vocabulary: CharVocabulary | None = None,
    ):
        self._length = check_int("sequence_length", sequence_length, minimum=1)
        self.split = check_split(split)
        test_fraction = check_open_fraction("test_fraction", test_fraction)
        _check_vocabulary(vocabulary, min_count)
        text = load_text(text_path)
        if vocabulary is None:
            minimum = DEFAULT_MIN_COUNT if min_count is None else min_count
            train_text = _split_text(text, test_fraction)[0]
            vocabulary = CharVocabulary.from_text(train_text, minimum)
        self.vocabulary = vocabulary
        train, test = _encoded_splits(text, test_fraction, vocabulary)
        for name, codes in (("train", train), ("test", test)):
            if len(codes) < self._length + 1:
                raise ValueError(
                    f"the {name} split holds {len(codes)} characters, fewer than "
                    f"sequence_length + 1 = {self._length + 1}; use a longer text, shorter "
                    f"sequences or another test_fraction (got {test_fraction})"
                )
        self.codes = train if split == "train" else test
        counts = np.bincount(train, minlength=vocabulary.size)
        probabilities = counts[counts > 0] / len(train)
        self.unigram_entropy_bits = float(-(probabilities * np.log2(probabilities)).sum())
        self.input_size = self.output_size = vocabulary.size
        self._one_hot = np.eye(vocabulary.size, dtype=np.float32)
        self.observation_space = spaces.Box(0.0, 1.0, (vocabulary.size,), np.float32)

    @property
    def sequence_length(self) -> int:
        return self._length

    def draw(self, rng: np.random.Generator) -> int:
        """A window start drawn uniformly: ``rng.integers(n - T)`` for a split of n characters."""
        return int(rng.integers(len(self.codes) - self._length))

    def next_draw(self, previous: int, rng: np.random.Generator) -> int:  # noqa: ARG002
        """The window after ``previous`` (the split's start when it would run past the end)."""
        start = previous + self._length
        return 0 if start + self._length + 1 > len(self.codes) else start

    def _batch(self, starts: np.ndarray) -> SequenceBatch:
        codes = self.codes[starts[:, None] + np.arange(self._length + 1)]
        one_hot = self._one_hot[codes]
        scored = np.ones(self._length, dtype=bool)
        return SequenceBatch.from_batch_major(one_hot[:, :-1], one_hot[:, 1:], scored)

    def build(self, draws: Sequence[int]) -> SequenceBatch:
        return self._batch(np.asarray(draws, dtype=np.int64))

    def loss_info(self, loss: np.ndarray) -> dict[str, np.ndarray]:
        """``bits_per_char`` ``(B,)``: this character's loss in bits (nats / ln 2)."""
        return {"bits_per_char": loss / NATS_PER_BIT}

    def windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole split cut into consecutive windows of T inputs (N = (n - 1) // T of them).

        Memory: 2 · N · T · vocabulary size float32 numbers (about 36 MB for the default test
        split).

        Returns:
            ``(inputs float32 (N, T, V), targets float32 (N, T, V), scored bool (T,))``, the
            arguments of :func:`agents.evaluation.evaluate_sequences`.
        """
        count = (len(self.codes) - 1) // self._length
        batch = self._batch(np.arange(count, dtype=np.int64) * self._length)
        inputs = np.ascontiguousarray(batch.inputs.swapaxes(0, 1))
        return inputs, np.ascontiguousarray(batch.targets.swapaxes(0, 1)), batch.scored.copy()

    def render(
        self, batch: SequenceBatch, index: int, t: int, predictions: np.ndarray | None
    ) -> str:
        def shown(codes: np.ndarray) -> str:
            return self.vocabulary.decode(codes).replace("\n", "⏎").replace("\t", "⇥")

        inputs = shown(batch.inputs[:, index].argmax(-1))
        targets = shown(batch.targets[:, index].argmax(-1))
        lines = [
            f"CharLM ({self.split}, {self.vocabulary.size} symbols): T={self._length}; {t} of "
            f"{self._length} characters answered",
            f"input:      {inputs}",
            f"target:     {targets}",
        ]
        if predictions is not None and t > 0:
            lines.append(f"prediction: {shown(predictions[:t, index].argmax(-1))}")
        else:
            lines.append("no prediction received yet")
        return "\n".join(lines)


class CharLMEnv(SequenceEnv):
    """Next-character prediction on a text, one character per step.

    ## Description

    Character-level language modelling, the workload truncated BPTT was made for: the env shows
    one character of a text per step (one-hot) and the learner predicts the next one (logits),
    scored with softmax cross-entropy on every step. Each sequence is a window of T characters
    of the split. The default corpus is the CPython documentation that ships with Python
    (`pydoc_data.topics`: every topic text, joined by a newline in sorted key order; about
    465,000 characters in Python 3.11); `text_path=` reads any UTF-8 file instead.

    The text is split once: the first `1 - test_fraction` of its characters are the train
    split, the rest the held-out test split (`split="test"`). The vocabulary is fixed: the
    characters seen at least `min_count` times in the train split, by code point, plus one
    unknown symbol (the last index) for every other character. It is built from the train split
    whatever `split` is, so a train env and a test env of the same text agree on every index;
    `env.unwrapped.vocabulary` is a `bpl_envs.CharVocabulary` to save with a learner
    (`.save(path)`) and pass back (`vocabulary=CharVocabulary.load(path)`).
    `env.unwrapped.unigram_entropy_bits` is the entropy of the train split's character
    frequencies (4.69 bits for the default corpus): the loss of a model without memory.

    | t          | input token x_t              | target y_t (scored?)             |
    |------------|------------------------------|----------------------------------|
    | 0 .. T - 1 | one-hot of character s + t   | one-hot of character s + t + 1 (yes) |

    for a window starting at character s of the split.

    ## Action Space

    `Box(-1, 1, (V,), float32)` with V = `vocabulary.size`: the logits of the next character.
    The bounds are nominal (Stable-Baselines3's checker warns for any other Box): ANY finite
    floating action is accepted and scored as is. A wrong shape or a NaN/inf raises a
    ValueError, a non-floating dtype a TypeError; nothing is clipped or reshaped.

    ## Observation Space

    `Box(0, 1, (V,), float32)`: the one-hot current character. After the last token the
    returned observation is all zeros; it is not part of the sequence.

    ## Rewards

    `reward = -loss` on every step, `loss` = the softmax cross-entropy of the logits against the
    next character, in nats (`bpl_envs.get_loss("ce")`, in float64). `info`: `"target"` (float32
    `(V,)`, one-hot), `"scored"` (always True), `"loss"`, `"sequence_end"` (bool, True on the
    last token) and `"bits_per_char"` (the loss in bits, loss / ln 2: its mean over the steps is
    the bits per character).

    ## Starting State

    Each sequence starts at character `np_random.integers(n - T)` of its split of n characters
    (a uniformly drawn window of T + 1 characters). All randomness comes from the env's
    generator (`reset(seed=...)`).

    ## Episode End

    `terminated=True` on the last token (t = T - 1); `truncated` is always False. Stepping again
    without `reset` raises `gymnasium.error.ResetNeeded`.
    With `stream=True` the env never terminates and reads the text continuously: the step that
    answers the last token starts the next window where this one ended (back at the split's
    start when it would run past the end) and marks the boundary with
    `info["sequence_end"]=True`. `reset()` starts at a random window.

    ## Arguments

    | Parameter         | Type               | Default   | Description                          |
    |-------------------|--------------------|-----------|--------------------------------------|
    | `sequence_length` | int >= 1           | `50`      | T, characters per window             |
    | `text_path`       | path/None          | `None`    | UTF-8 text; None: Python's docs      |
    | `split`           | `"train"`/`"test"` | `"train"` | which part of the text to read       |
    | `test_fraction`   | float in (0, 1)    | `0.1`     | the last share of the text: test     |
    | `min_count`       | int >= 1/None      | `None`    | vocabulary threshold (None: 5)       |
    | `vocabulary`      | CharVocabulary/None| `None`    | a fixed vocabulary instead           |
    | `render_mode`     | str or None        | `None`    | `"ansi"` (the text), `"rgb_array"`   |
    | `stream`          | bool               | `False`   | read continuously; see Episode End   |

    `min_count` (only without `vocabulary`): characters seen fewer times in the train split map
    to the unknown symbol.
    No reset options. `env.unwrapped.task` is `TaskSpec(V, V, "ce", "all", T)`.
    `env.unwrapped.windows()` returns the whole split as consecutive windows (for evaluation).

    ## Vectorized environment

    `gym.make_vec("bpl/CharLM-v0", num_envs=B, **kwargs)` gives `CharLMVectorEnv`: B windows in
    lock-step, streaming exactly what a `SyncVectorEnv` of B single envs streams, in each
    autoreset mode (`autoreset_mode=`, default `AutoresetMode.NEXT_STEP`).

    ## Version History

    * v0: Initial version.
    """

    def __init__(
        self,
        sequence_length: int = 50,
        text_path: str | os.PathLike | None = None,
        split: str = "train",
        test_fraction: float = 0.1,
        min_count: int | None = None,
        vocabulary: CharVocabulary | None = None,
        render_mode: str | None = None,
        stream: bool = False,
    ):
        source = CharLMSequences(
            sequence_length, text_path, split, test_fraction, min_count, vocabulary
        )
        super().__init__(source, render_mode, stream)

    @property
    def vocabulary(self) -> CharVocabulary:
        """The fixed vocabulary (save it with a learner to read a test split the same way)."""
        return self._source.vocabulary

    @property
    def unigram_entropy_bits(self) -> float:
        """Entropy of the train split's character frequencies, in bits per character."""
        return self._source.unigram_entropy_bits

    def windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The split as consecutive windows; see :meth:`CharLMSequences.windows`."""
        return self._source.windows()


class CharLMVectorEnv(SequenceVectorEnv):
    """Next-character prediction, B windows in lock-step; see :class:`CharLMEnv`.

    Takes ``num_envs`` and, as keywords, ``autoreset_mode`` (default ``AutoresetMode.NEXT_STEP``),
    ``render_mode``, ``stream`` and the arguments of :class:`CharLMEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        stream: bool = False,
        sequence_length: int = 50,
        text_path: str | os.PathLike | None = None,
        split: str = "train",
        test_fraction: float = 0.1,
        min_count: int | None = None,
        vocabulary: CharVocabulary | None = None,
    ):
        source = CharLMSequences(
            sequence_length, text_path, split, test_fraction, min_count, vocabulary
        )
        super().__init__(
            num_envs, source, autoreset_mode=autoreset_mode, render_mode=render_mode, stream=stream
        )

    @property
    def vocabulary(self) -> CharVocabulary:
        """The fixed vocabulary (save it with a learner to read a test split the same way)."""
        return self._source.vocabulary

    @property
    def unigram_entropy_bits(self) -> float:
        """Entropy of the train split's character frequencies, in bits per character."""
        return self._source.unigram_entropy_bits

    def windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The split as consecutive windows; see :meth:`CharLMSequences.windows`."""
        return self._source.windows()
