"""Property-based tests of every task's public surface: constructor arguments, reset arguments.

For each task (single and vector env) hypothesis draws a few constructor arguments at a time,
valid or not (tests/fuzz.py), and checks the contract against an oracle written here, not the
library's checks: valid values build an env whose spaces and task spec follow from them; an
invalid value raises TypeError or ValueError naming the argument (a missing MNIST folder raises
FileNotFoundError). The same for ``reset(seed=..., options=...)``. Failures hypothesis found are
kept below as plain regression tests.
"""

from __future__ import annotations

import math
import pathlib
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from hypothesis import given
from hypothesis import strategies as st

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs import CharVocabulary
from bpl_envs.char_lm import python_docs_text
from bpl_envs.copy_repeat import CopyRepeatCurriculum
from tests.fuzz import (
    INVALID,
    MAYBE,
    Arg,
    bool_arg,
    bools,
    call_with_contract,
    choice_arg,
    floats,
    garbage,
    int_arg,
    ints,
    optional_choice_arg,
    optional_int_arg,
    real_arg,
    subsets_of,
)

# ----------------------------------------------------------------------------- the arguments


def _curriculum_arg() -> Arg:
    def meaning(value: Any) -> Any:
        if value is None or isinstance(value, CopyRepeatCurriculum):
            return value
        return INVALID

    return Arg(st.one_of(st.none(), st.builds(CopyRepeatCurriculum)), garbage, meaning)


def _end_point_arg() -> Arg:
    coordinate = st.one_of(
        floats(-3, 3), ints(-3, 3), st.booleans(), st.none(), st.text(max_size=1)
    )
    likely = st.one_of(
        st.tuples(floats(-3, 3), floats(-3, 3)),
        st.builds(np.array, st.lists(st.floats(-3, 3), min_size=2, max_size=2)),
    )
    unlikely = st.one_of(
        st.tuples(coordinate, coordinate),
        st.lists(coordinate, min_size=0, max_size=3),
        st.tuples(st.just(1e151), st.just(0.0)),
        garbage,
    )

    def meaning(value: Any) -> Any:
        if not isinstance(value, list | tuple | np.ndarray) or np.ndim(value) != 1:
            return INVALID
        if len(value) != 2:
            return INVALID
        if not all(
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in value
        ):
            return INVALID
        if not all(math.isfinite(float(v)) and abs(float(v)) <= 1e150 for v in value):
            return INVALID  # (a larger coordinate could overflow a squared error)
        return (float(value[0]), float(value[1]))

    return Arg(likely, unlikely, meaning)


def _fraction_arg(smallest_class: int) -> Arg:
    """A test fraction in (0, 1); so small (or large) that a class of ``smallest_class`` items
    rounds to an empty test (or train) share, the split may be refused (naming the argument)."""
    base = real_arg(0.0, 1.0, closed=(False, False))
    edge = 1.0 / smallest_class

    def meaning(value: Any) -> Any:
        number = base.meaning(value)
        if number is INVALID or edge <= number <= 1.0 - edge:
            return number
        return MAYBE

    return Arg(base.likely, st.one_of(base.unlikely, st.floats(1e-6, 1e-2)), meaning)


def _root_arg() -> Arg:
    def meaning(value: Any) -> Any:
        if value is None:
            return None
        return MAYBE if isinstance(value, str) else INVALID  # a path: the files may be missing

    return Arg(st.none(), st.one_of(st.just("/nonexistent/mnist"), st.integers(), garbage), meaning)


def _odd_int_arg() -> Arg:
    base = int_arg(1, draw_up_to=9)

    def meaning(value: Any) -> Any:
        number = base.meaning(value)
        return number if number is INVALID or number % 2 == 1 else INVALID

    return Arg(base.likely, base.unlikely, meaning)


SMALL_TEXT_LENGTH = 400
_SMALL_TEXT = pathlib.Path(tempfile.mkdtemp(prefix="bpl-charlm-")) / "small text é.txt"
_SMALL_TEXT.write_text(("the quick brown fox jumps over the lazy dog. " * 9)[:SMALL_TEXT_LENGTH])


def _text_path_arg() -> Arg:
    """A small UTF-8 text (cheap vocabularies), or a missing file, or not a path."""

    def meaning(value: Any) -> Any:
        if value is None:
            return None  # Python's documentation, shipped with the package
        if isinstance(value, str | pathlib.Path):
            return MAYBE if str(value) != str(_SMALL_TEXT) else value  # a missing file
        return INVALID

    likely = st.sampled_from([str(_SMALL_TEXT), _SMALL_TEXT])
    return Arg(likely, st.one_of(st.just("/nonexistent.txt"), st.integers(), garbage), meaning)


def _vocabulary_arg() -> Arg:
    vocabulary = CharVocabulary.from_text(_SMALL_TEXT.read_text(), 1)
    return Arg(
        st.one_of(st.none(), st.just(vocabulary)),
        garbage,
        lambda value: value if value is None or value is vocabulary else INVALID,
    )


RENDER = optional_choice_arg(["ansi", "rgb_array"])
STREAM = bool_arg()

TASKS: dict[str, dict[str, Arg]] = {
    "bpl/CopyRepeat-v0": {
        "pattern_length": int_arg(1, draw_up_to=3),
        "repeats": int_arg(1, draw_up_to=4),
        "bits": int_arg(1, draw_up_to=6),
        "max_repeats": int_arg(1, draw_up_to=4),
        "curriculum": _curriculum_arg(),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/LineDraw-v0": {
        "sequence_length": int_arg(1, draw_up_to=5),
        "cue_bits": int_arg(1, draw_up_to=5),
        "end_point": _end_point_arg(),
        "end_only": bool_arg(),
        "cue_seed": int_arg(0, draw_up_to=5),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/SequentialDigits-v0": {
        "split": choice_arg(["train", "test"]),
        "test_fraction": _fraction_arg(smallest_class=174),
        "split_seed": int_arg(0, draw_up_to=3),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/SequentialMNIST-v0": {
        "root": _root_arg(),
        "split": choice_arg(["train", "test"]),
        "pixel_by_pixel": bool_arg(),
        "permute": bool_arg(),
        "permutation_seed": int_arg(0, draw_up_to=3),
        "test_fraction": _fraction_arg(smallest_class=500),
        "split_seed": int_arg(0, draw_up_to=3),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/AddingProblem-v0": {
        "sequence_length": int_arg(2, draw_up_to=6),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/CharLM-v0": {
        "sequence_length": int_arg(1, draw_up_to=6),
        "text_path": _text_path_arg(),
        "split": choice_arg(["train", "test"]),
        "test_fraction": _fraction_arg(smallest_class=SMALL_TEXT_LENGTH // 10),
        "min_count": optional_int_arg(1, draw_up_to=4),
        "vocabulary": _vocabulary_arg(),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/MackeyGlass-v0": {
        "sequence_length": int_arg(1, draw_up_to=6),
        "tau": Arg(
            st.sampled_from([17, np.int64(30)]),
            st.one_of(ints(-2, 0), floats(1, 30), bools, garbage),
            int_arg(1).meaning,
        ),
        "noise_std": real_arg(0.0, 1e6, draw=(0.0, 0.5)),
        "split": choice_arg(["train", "test"]),
        "test_fraction": _fraction_arg(smallest_class=100),
        "render_mode": RENDER,
        "stream": STREAM,
    },
    "bpl/RandomWalk-v0": {"n_states": _odd_int_arg(), "render_mode": RENDER},
}

BASE_KWARGS = {"bpl/CharLM-v0": {"text_path": str(_SMALL_TEXT), "sequence_length": 4}}
"""Given unless drawn: CharLM on a short text (its default, Python's docs, takes 0.1 s to
build a vocabulary from)."""

AUTORESET_VALUES = [*AutoresetMode, *(mode.value for mode in AutoresetMode)]
VECTOR_ARGS: dict[str, Arg] = {
    "num_envs": int_arg(1, draw_up_to=3),
    "autoreset_mode": Arg(
        st.sampled_from(AUTORESET_VALUES),
        st.one_of(st.sampled_from(["NEXT_STEP", "x"]), garbage),
        lambda value: (
            AutoresetMode(value)
            if isinstance(value, AutoresetMode | str) and value in AUTORESET_VALUES
            else INVALID
        ),
    ),
}


def _fits_together(env_id: str, given: dict[str, Any]) -> list[str]:
    """Constraints between the arguments of one task (names of those that clash)."""
    if env_id == "bpl/CopyRepeat-v0":
        repeats, max_repeats = given.get("repeats", 1), given.get("max_repeats", 20)
        if repeats > max_repeats:
            return ["repeats", "max_repeats"]
        lengths = (given.get("pattern_length", 1), repeats)
        if given.get("curriculum") is not None and lengths != (1, 1):
            return ["curriculum", "pattern_length", "repeats"]
    if env_id == "bpl/CharLM-v0":
        if given.get("vocabulary") is not None and given.get("min_count") is not None:
            return ["vocabulary", "min_count"]
        if _charlm_known_characters({**BASE_KWARGS[env_id], **given}) == 0:
            return ["min_count", "test_fraction", "text_path"]
    if env_id == "bpl/SequentialMNIST-v0":
        if given.get("permutation_seed", 0) != 0 and not given.get("permute", False):
            return ["permutation_seed", "permute"]
        subset = (given.get("test_fraction", 0.2), given.get("split_seed", 0))
        if given.get("root") is not None and subset != (0.2, 0):
            return ["test_fraction", "split_seed", "root"]
    return []


def _charlm_known_characters(meanings: dict[str, Any]) -> int:
    """How many characters CharLM's vocabulary knows: those of the given vocabulary, or those
    occurring min_count times (default 5) in the train part of the text (README)."""
    if meanings.get("vocabulary") is not None:
        return meanings["vocabulary"].size - 1
    small = meanings.get("text_path") is not None
    text = _SMALL_TEXT.read_text() if small else python_docs_text()
    train = text[: round(len(text) * (1 - meanings.get("test_fraction", 0.1)))]
    minimum = meanings.get("min_count") or 5
    return sum(train.count(c) >= minimum for c in set(train))


def _sizes(env_id: str, meanings: dict[str, Any]) -> tuple[int, int, int]:
    """(input_size, output_size, sequence_length) the arguments ask for (independent of the
    env: the task descriptions of the README)."""
    if env_id == "bpl/CopyRepeat-v0":
        bits = meanings.get("bits", 8)
        n, r = meanings.get("pattern_length", 1), meanings.get("repeats", 1)
        return bits + 2, bits + 1, (r + 1) * n + 3
    if env_id == "bpl/LineDraw-v0":
        return meanings.get("cue_bits", 10), 2, meanings.get("sequence_length", 10)
    if env_id == "bpl/SequentialDigits-v0":
        return 8, 10, 8
    if env_id == "bpl/AddingProblem-v0":
        return 2, 1, meanings.get("sequence_length", 50)
    if env_id == "bpl/MackeyGlass-v0":
        return 1, 1, meanings.get("sequence_length", 100)
    if env_id == "bpl/CharLM-v0":  # the characters seen min_count times in the train part
        size = _charlm_known_characters(meanings) + 1  # and the unknown symbol
        return size, size, meanings.get("sequence_length", 50)
    pixel = meanings.get("pixel_by_pixel", False)
    return (1, 10, 784) if pixel else (28, 10, 28)


def _make(env_id: str, vector: bool, **kwargs: Any) -> Any:
    """The env class registered for ``env_id`` (its vector env class with ``vector``), called
    directly: ``gym.make`` inspects ``render_mode`` itself before the env sees it (Gymnasium
    calls ``render_mode.endswith`` on any value it does not list, so a non-string fails there
    with an AttributeError that no env can prevent)."""
    spec = gym.spec(env_id)
    entry_point = spec.vector_entry_point if vector else spec.entry_point
    return load_env_creator(entry_point)(**kwargs)


@pytest.mark.parametrize("env_id", sorted(TASKS))
@given(data=st.data())
def test_every_constructor_argument_is_checked_at_the_door(env_id, data):
    vector = data.draw(st.booleans(), label="vector")
    args = {**TASKS[env_id], **(VECTOR_ARGS if vector else {})}
    given_kwargs = data.draw(subsets_of(args), label="kwargs")
    if vector:
        given_kwargs.setdefault("num_envs", 2)
    base = {k: v for k, v in BASE_KWARGS.get(env_id, {}).items() if k not in given_kwargs}
    env, meanings = call_with_contract(
        lambda **kwargs: _make(env_id, vector, **base, **kwargs),
        args,
        given_kwargs,
        cross=lambda meanings: _fits_together(env_id, meanings),
        also_allowed=(FileNotFoundError,),
    )
    if env is None:
        return
    meanings = {**base, **meanings}
    batch = meanings.get("num_envs", 1)
    if env_id == "bpl/RandomWalk-v0":
        n_states = meanings.get("n_states", 19)
        single = env.single_observation_space if vector else env.observation_space
        assert single == gym.spaces.Discrete(n_states + 2)
        obs, _ = env.reset(seed=0)
        assert np.all(obs == (n_states + 1) // 2)
        return
    input_size, output_size, length = _sizes(env_id, meanings)
    obs, _ = env.reset(seed=0)
    assert obs.shape == ((batch, input_size) if vector else (input_size,))
    assert obs.dtype == np.float32 and np.isfinite(obs).all()
    task = env.task if vector else env.unwrapped.task
    assert (task.input_size, task.output_size, task.sequence_length) == (
        input_size,
        output_size,
        length,
    )
    assert all(type(v) is int for v in (task.input_size, task.output_size, task.sequence_length))
    action = np.zeros((batch, output_size) if vector else output_size, np.float32)
    env.step(action)
    if vector and "autoreset_mode" in meanings:
        assert env.metadata["autoreset_mode"] == meanings["autoreset_mode"]


# -------------------------------------------------------------------------- reset arguments

RESET_OPTIONS: dict[str, dict[str, Arg]] = {
    "bpl/CopyRepeat-v0": {"pattern_length": int_arg(1, draw_up_to=3), "repeats": int_arg(1, 20)},
}

seeds = st.one_of(
    st.none(), ints(-2, 5), st.integers(0, 2**80), st.booleans(), floats(0, 3), garbage
)


def _seed_meaning(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        return INVALID
    return int(value) if 0 <= value < 2**64 else INVALID  # what numpy, Gymnasium and torch take


@st.composite
def _vector_seeds(draw: st.DrawFn, num_envs: int) -> Any:
    return draw(
        st.one_of(
            seeds,
            st.lists(st.one_of(st.none(), ints(-1, 5)), min_size=num_envs, max_size=num_envs),
            st.lists(ints(0, 5), min_size=0, max_size=num_envs + 1),
        )
    )


def _vector_seed_meaning(value: Any, num_envs: int) -> Any:
    if isinstance(value, list):
        if len(value) != num_envs:
            return INVALID
        meanings = [_seed_meaning(v) for v in value]
        return INVALID if any(m is INVALID for m in meanings) else meanings
    return _seed_meaning(value)


@st.composite
def _options(draw: st.DrawFn, env_id: str) -> Any:
    allowed = RESET_OPTIONS.get(env_id, {})
    names = st.sampled_from([*allowed, "bogus", "seed"])
    values = st.one_of(*(arg.strategy for arg in allowed.values())) if allowed else garbage
    return draw(
        st.one_of(
            st.none(),
            st.dictionaries(names, values, max_size=2),
            st.builds(dict),
            st.sampled_from([[], "pattern_length", 3, ("repeats", 2)]),
        )
    )


def _options_meaning(env_id: str, options: Any) -> tuple[Any, list[str]]:
    """(the options as plain data, or INVALID; the names an error may use)."""
    if options is None:
        return {}, []
    if not isinstance(options, dict):
        return INVALID, ["options"]
    allowed = RESET_OPTIONS.get(env_id, {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        return INVALID, [*unknown, "options"]
    meanings = {name: allowed[name].meaning(value) for name, value in options.items()}
    bad = [name for name, meaning in meanings.items() if meaning is INVALID]
    return (INVALID, bad) if bad else (meanings, [])


@pytest.mark.parametrize("env_id", sorted(TASKS))
@given(data=st.data())
def test_every_reset_argument_is_checked_at_the_door(env_id, data):
    vector = data.draw(st.booleans(), label="vector")
    num_envs = 2
    env = _make(
        env_id, vector, **BASE_KWARGS.get(env_id, {}), **({"num_envs": 2} if vector else {})
    )
    seed = data.draw(_vector_seeds(num_envs) if vector else seeds, label="seed")
    options = data.draw(_options(env_id), label="options")
    seed_meaning = _vector_seed_meaning(seed, num_envs) if vector else _seed_meaning(seed)
    option_meanings, option_names = _options_meaning(env_id, options)
    invalid = (["seed"] if seed_meaning is INVALID else []) + option_names
    try:
        obs, info = env.reset(seed=seed, options=options)
    except (TypeError, ValueError) as error:
        assert invalid, f"valid seed={seed!r}, options={options!r} refused: {error!r}"
        assert any(name in str(error) for name in invalid), (
            f"seed={seed!r}, options={options!r}: the error does not name {invalid}: {error!r}"
        )
        return
    assert not invalid, f"seed={seed!r}, options={options!r} accepted; {invalid} must be refused"
    assert info == {}
    if env_id == "bpl/CopyRepeat-v0":
        n, r = option_meanings.get("pattern_length", 1), option_meanings.get("repeats", 1)
        task = env.task if vector else env.unwrapped.task
        assert task.sequence_length == (r + 1) * n + 3


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_the_same_seed_as_numpy_or_python_int_gives_the_same_stream(env_id):
    for vector in (False, True):
        kwargs = {"num_envs": 2} if vector else {}
        first, _ = _make(env_id, vector, **kwargs).reset(seed=7)
        second, _ = _make(env_id, vector, **kwargs).reset(seed=np.int64(7))
        np.testing.assert_array_equal(first, second)


# ------------------------------------------------- regressions: what hypothesis found, kept


def test_regression_a_0d_array_end_point_names_the_argument():
    # was: TypeError("len() of unsized object") from inside the check
    with pytest.raises(TypeError, match="end_point must be a pair"):
        gym.make("bpl/LineDraw-v0", end_point=np.array(0.0))


@pytest.mark.parametrize("vector", [False, True])
def test_regression_reset_seeds_are_checked_by_the_env(vector):
    # was: gymnasium.error.Error("Seed must be a python integer, actual type: numpy.int64") for a
    # NumPy int, and the same Gymnasium error (neither TypeError nor ValueError) for -1 or object()
    env = gym.make_vec("bpl/LineDraw-v0", num_envs=2) if vector else gym.make("bpl/LineDraw-v0")
    env.reset(seed=np.int64(3))
    with pytest.raises(ValueError, match=r"seed must be None or an int in \[0, "):
        env.reset(seed=-1)
    with pytest.raises(TypeError, match="seed must be"):
        env.reset(seed=object())
    with pytest.raises(TypeError, match="seed must be"):
        env.reset(seed=True)


def test_regression_random_walk_seeds_and_options_are_checked():
    walk = gym.make("bpl/RandomWalk-v0")
    with pytest.raises(TypeError, match="options must be None or a dict"):
        walk.reset(options=[])  # was: accepted (an empty list is falsy)
    with pytest.raises(ValueError, match="seed must be"):
        walk.reset(seed=-1)  # was: gymnasium.error.Error
    walks = gym.make_vec("bpl/RandomWalk-v0", num_envs=2)
    walks.reset(seed=np.int64(1))  # was: ValueError "seed must be None, an int or a list"
    with pytest.raises(ValueError, match=r"seed\[1\] must be"):
        walks.reset(seed=[0, -5])  # was: gymnasium.error.Error


def test_regression_mnist_root_of_the_wrong_type_names_root():
    # was: TypeError("expected str, bytes or os.PathLike object, not int") from pathlib
    with pytest.raises(TypeError, match="root must be None .* got 5"):
        gym.make("bpl/SequentialMNIST-v0", root=5)


def test_regression_mackey_glass_noise_too_large_for_float32_is_refused():
    # was: accepted; the observation space's bounds and the observations were ±inf
    with pytest.raises(ValueError, match=r"noise_std must be a number in \[0, 1e\+06\]"):
        gym.make("bpl/MackeyGlass-v0", noise_std=1e308)


def test_regression_charlm_names_test_fraction_when_the_train_part_is_too_short():
    # was: "no character of the text occurs min_count=5 times or more; lower min_count" although
    # the text holds enough: test_fraction left 6 characters to the train part
    with pytest.raises(ValueError, match=r"min_count=5 .* test_fraction=0\.985"):
        gym.make("bpl/CharLM-v0", text_path=str(_SMALL_TEXT), test_fraction=0.985)
