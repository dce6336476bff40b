"""A fixed character vocabulary: the index of every character a language model reads or writes."""

from __future__ import annotations

import collections
import json
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np

from bpl_envs.checks import check_int

__all__ = ["UNKNOWN_SYMBOL", "CharVocabulary"]

UNKNOWN_SYMBOL = "\ufffd"
"""What :meth:`CharVocabulary.decode` writes for the unknown index (U+FFFD REPLACEMENT
CHARACTER)."""
_FORMAT = 1


@dataclass(frozen=True)
class CharVocabulary:
    """Known characters in index order, plus one unknown symbol at index ``len(characters)``.

    Every character not in ``characters`` encodes to the unknown index, so a learner trained on
    one text can read any other. Save it next to a learner's checkpoint (:meth:`save`) and pass
    it back (``vocabulary=CharVocabulary.load(path)``) so that both agree on every index.

    Attributes:
        characters: the known characters, each once, in index order.
    """

    characters: str
    _order: np.ndarray = field(init=False, repr=False, compare=False)
    _sorted_codes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.characters, str):
            raise TypeError(
                f"characters must be a str, got {type(self.characters).__name__}: "
                f"{self.characters!r}"
            )
        if not self.characters:
            raise ValueError("characters must hold at least one character, got ''")
        repeated = sorted(c for c, n in collections.Counter(self.characters).items() if n > 1)
        if repeated:
            raise ValueError(f"characters must be distinct; repeated: {repeated}")
        codes = np.array([ord(c) for c in self.characters], dtype=np.int64)
        object.__setattr__(self, "_order", np.argsort(codes))
        object.__setattr__(self, "_sorted_codes", codes[self._order])

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> CharVocabulary:
        """The characters of ``text`` seen at least ``min_count`` times, by code point."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        min_count = check_int("min_count", min_count, minimum=1)
        counts = collections.Counter(text)
        known = sorted(c for c, count in counts.items() if count >= min_count)
        if not known:
            raise ValueError(
                f"no character of the text occurs min_count={min_count} times or more; "
                "lower min_count"
            )
        return cls("".join(known))

    @property
    def size(self) -> int:
        """Number of indices: the known characters plus the unknown symbol."""
        return len(self.characters) + 1

    @property
    def unknown_index(self) -> int:
        """The index every unknown character encodes to (the last one)."""
        return len(self.characters)

    def encode(self, text: str) -> np.ndarray:
        """The index of every character of ``text``: int64 ``(len(text),)``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        position = np.searchsorted(self._sorted_codes, codes)
        clipped = np.minimum(position, len(self.characters) - 1)
        known = self._sorted_codes[clipped] == codes
        return np.where(known, self._order[clipped], self.unknown_index).astype(np.int64)

    def decode(self, indices: np.ndarray) -> str:
        """The text of ``indices`` (ints in ``[0, size)``), the unknown one as U+FFFD."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(f"indices must be a 1-D int array, got {indices.dtype}{indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise ValueError(
                f"indices must lie in [0, {self.size}), got values in "
                f"[{indices.min()}, {indices.max()}]"
            )
        symbols = self.characters + UNKNOWN_SYMBOL
        return "".join(symbols[i] for i in indices)

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the vocabulary as JSON (atomically: a temporary file, then a rename)."""
        path = pathlib.Path(path)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(
            json.dumps({"format": _FORMAT, "characters": self.characters}), encoding="utf-8"
        )
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocabulary:
        """Read what :meth:`save` wrote."""
        data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a CharVocabulary file (format {_FORMAT})")
        return cls(data["characters"])
