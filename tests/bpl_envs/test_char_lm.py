"""Character-level language modelling: corpus, splits, vocabulary, entropy, stream and errors.

Every check reads the raw text independently (``str`` slicing, ``collections.Counter``) and
compares with what the env streams. The generic API (checkers, vector env = SyncVectorEnv,
seeding) is in test_env_api.py.
"""

import collections
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import bpl_envs  # noqa: F401  (registers the ids)
from bpl_envs import CharVocabulary
from bpl_envs.vocabulary import UNKNOWN_SYMBOL


def raw_corpus() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def split_text(text: str, test_fraction: float) -> tuple[str, str]:
    cut = round(len(text) * (1 - test_fraction))
    return text[:cut], text[cut:]


def read(env, steps: int, first_observation):
    """Decode ``steps`` tokens and targets of a single env as text."""
    vocabulary = env.unwrapped.vocabulary
    tokens, targets = [first_observation.argmax()], []
    for _ in range(steps):
        observation, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        targets.append(info["target"].argmax())
        tokens.append(observation.argmax())
    return vocabulary.decode(np.array(tokens[:-1])), vocabulary.decode(np.array(targets))


def known(text: str, vocabulary: CharVocabulary) -> str:
    return "".join(c if c in vocabulary.characters else UNKNOWN_SYMBOL for c in text)


def test_the_default_vocabulary_is_the_train_splits_characters_seen_five_times():
    train, _ = split_text(raw_corpus(), 0.1)
    counts = collections.Counter(train)
    env = gym.make("bpl/CharLM-v0")
    vocabulary = env.unwrapped.vocabulary
    assert vocabulary.characters == "".join(sorted(c for c, n in counts.items() if n >= 5))
    assert env.unwrapped.task.input_size == env.unwrapped.task.output_size == vocabulary.size
    assert vocabulary.size == len(vocabulary.characters) + 1 == vocabulary.unknown_index + 1
    # the test split does not change it
    assert gym.make("bpl/CharLM-v0", split="test").unwrapped.vocabulary == vocabulary


def test_the_unigram_entropy_is_that_of_the_train_splits_character_counts():
    train, _ = split_text(raw_corpus(), 0.1)
    vocabulary = gym.make("bpl/CharLM-v0").unwrapped.vocabulary
    counts = collections.Counter(c if c in vocabulary.characters else "<unk>" for c in train)
    entropy = -sum(n / len(train) * math.log2(n / len(train)) for n in counts.values())
    assert gym.make("bpl/CharLM-v0").unwrapped.unigram_entropy_bits == pytest.approx(
        entropy, rel=1e-12
    )
    assert gym.make("bpl/CharLM-v0").unwrapped.unigram_entropy_bits == pytest.approx(4.69, abs=0.01)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_window_is_consecutive_characters_of_the_split_and_targets_are_shifted_by_one(split):
    text = split_text(raw_corpus(), 0.1)[split == "test"]
    env = gym.make("bpl/CharLM-v0", sequence_length=40, split=split)
    readable = known(text, env.unwrapped.vocabulary)
    for seed in range(3):
        inputs, targets = read(env, 40, env.reset(seed=seed)[0])
        start = readable.find(inputs + targets[-1])
        assert start >= 0, f"window {inputs!r} not found in the {split} split"
        assert targets == readable[start + 1 : start + 41]


def test_every_step_pays_the_cross_entropy_and_reports_it_in_bits():
    env = gym.make("bpl/CharLM-v0", sequence_length=10)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        logits = (3 * rng.standard_normal(env.action_space.shape)).astype(np.float32)
        _, reward, _, _, info = env.step(logits)
        expected = torch.nn.functional.cross_entropy(
            torch.tensor(logits, dtype=torch.float64)[None],
            torch.tensor([int(info["target"].argmax())]),
        ).item()
        assert info["scored"] and reward == pytest.approx(-expected, rel=1e-12)
        assert info["bits_per_char"] == pytest.approx(expected / math.log(2), rel=1e-12)


def test_a_stream_reads_the_text_continuously_and_wraps_to_the_start(tmp_path):
    path = tmp_path / "tiny.txt"
    letters = np.random.default_rng(0).integers(0, 26, size=200)
    text = "".join(chr(ord("a") + i) for i in letters) + "Z" * 50
    path.write_text(text, encoding="utf-8")
    env = gym.make(
        "bpl/CharLM-v0",
        text_path=str(path),
        sequence_length=30,
        test_fraction=0.2,
        stream=True,
        min_count=1,
    )
    train, _ = split_text(text, 0.2)  # 200 characters: windows at 0, 30, ..., 150, then 0
    inputs, targets = read(env, 30 * 8, env.reset(seed=0)[0])
    start = train.index(inputs[:30])
    expected, position = [], start
    for _ in range(8):
        expected.append(train[position : position + 31])
        position += 30
        if position + 31 > len(train):
            position = 0
    assert inputs == "".join(window[:30] for window in expected)
    assert targets == "".join(window[1:] for window in expected)
    assert "Z" not in inputs + targets  # the test split is never read


def test_windows_cut_the_split_in_order():
    env = gym.make("bpl/CharLM-v0", sequence_length=64, split="test")
    vocabulary = env.unwrapped.vocabulary
    inputs, targets, scored = env.unwrapped.windows()
    _, test = split_text(raw_corpus(), 0.1)
    count = (len(test) - 1) // 64
    assert inputs.shape == targets.shape == (count, 64, vocabulary.size) and scored.all()
    assert set(np.unique(inputs)) == {0.0, 1.0} and (inputs.sum(-1) == 1).all()
    assert vocabulary.decode(inputs.argmax(-1).ravel()) == known(test[: count * 64], vocabulary)
    assert vocabulary.decode(targets.argmax(-1).ravel()) == known(
        test[1 : count * 64 + 1], vocabulary
    )


def test_a_saved_vocabulary_reads_another_text_the_same_way(tmp_path):
    vocabulary = gym.make("bpl/CharLM-v0").unwrapped.vocabulary
    path = vocabulary.save(tmp_path / "vocabulary.json")
    loaded = CharVocabulary.load(path)
    assert loaded == vocabulary
    other = tmp_path / "other.txt"
    other.write_text("héllo wörld ∑ " * 10, encoding="utf-8")
    env = gym.make(
        "bpl/CharLM-v0", text_path=other, vocabulary=loaded, sequence_length=5, test_fraction=0.5
    )
    assert env.unwrapped.task.input_size == vocabulary.size
    indices = loaded.encode("héllo ∑")
    assert indices[1] == indices[-1] == loaded.unknown_index
    assert loaded.decode(indices) == f"h{UNKNOWN_SYMBOL}llo {UNKNOWN_SYMBOL}"
    assert [loaded.characters[i] for i in indices[[0, 2, 3, 4, 5]]] == list("hllo ")


def test_vocabulary_from_text_and_its_errors():
    vocabulary = CharVocabulary.from_text("banana band", min_count=2)
    assert vocabulary.characters == "abn"
    assert vocabulary.encode("bad!").tolist() == [1, 0, 3, 3]
    with pytest.raises(ValueError, match="characters must be distinct; repeated: \\['a'\\]"):
        CharVocabulary("aba")
    with pytest.raises(ValueError, match="at least one character"):
        CharVocabulary("")
    with pytest.raises(TypeError, match="characters must be a str"):
        CharVocabulary(["a"])
    with pytest.raises(ValueError, match="no character of the text occurs min_count=9"):
        CharVocabulary.from_text("abc", min_count=9)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        vocabulary.decode(np.array([4]))


def test_render_shows_the_window_and_the_guesses():
    env = gym.make("bpl/CharLM-v0", sequence_length=12, render_mode="ansi")
    env.reset(seed=0)
    assert "no prediction received yet" in env.render()
    vocabulary = env.unwrapped.vocabulary
    logits = np.zeros(env.action_space.shape, np.float32)
    logits[vocabulary.characters.index("e")] = 5.0
    for _ in range(3):
        env.step(logits)
    assert "prediction: eee" in env.render() and "3 of 12 characters answered" in env.render()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sequence_length": 0}, ValueError, "sequence_length must be an int >= 1, got 0"),
        ({"split": "dev"}, ValueError, "split must be 'train' or 'test'"),
        ({"test_fraction": 0}, ValueError, r"test_fraction must be a number in \(0, 1\), got 0"),
        ({"min_count": 0}, ValueError, "min_count must be an int >= 1, got 0"),
        ({"min_count": 2.5}, TypeError, "min_count must be an int"),
        ({"vocabulary": "abc"}, TypeError, "vocabulary must be a bpl_envs.CharVocabulary"),
        (
            {"vocabulary": CharVocabulary("ab"), "min_count": 3},
            ValueError,
            "min_count=3 only applies when the vocabulary is built",
        ),
        ({"text_path": 3}, TypeError, "text_path must be a path"),
        ({"text_path": "/no/such/file.txt"}, FileNotFoundError, "is not a file"),
        ({"sequence_length": 50_000}, ValueError, "the test split holds 46505 characters"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make("bpl/CharLM-v0", **kwargs)
    with pytest.raises(error, match=match):
        gym.make_vec("bpl/CharLM-v0", num_envs=2, **kwargs)


def test_a_text_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait ".encode("latin-1") * 20)
    with pytest.raises(ValueError, match="is not valid UTF-8"):
        gym.make("bpl/CharLM-v0", text_path=str(path), sequence_length=5)


@pytest.mark.parametrize(
    "action, error, match",
    [
        (np.zeros(3, np.float32), ValueError, "action must have shape"),
        (np.zeros(101, np.int32), TypeError, "must be a floating array"),
        (np.full(101, np.inf, np.float32), ValueError, "must be finite"),
    ],
)
def test_bad_actions_are_refused(action, error, match):
    env = gym.make("bpl/CharLM-v0")
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


def test_a_learner_checkpoint_and_a_saved_vocabulary_read_the_test_split(tmp_path):
    """Train on the train split, save the learner and the vocabulary; a fresh process's test env
    built with the loaded vocabulary has the learner's sizes, and the loaded learner scores it
    exactly as the trained one does."""
    from agents import BPTT
    from agents.evaluation import evaluate_sequences

    train = gym.make_vec("bpl/CharLM-v0", num_envs=2, sequence_length=6, min_count=20)
    learner = BPTT(train, hidden_size=4, seed=0).learn(episodes=2)
    learner.save(tmp_path / "learner.pt")
    train.unwrapped.vocabulary.save(tmp_path / "vocabulary.json")
    vocabulary = CharVocabulary.load(tmp_path / "vocabulary.json")
    test = gym.make_vec(
        "bpl/CharLM-v0", num_envs=2, sequence_length=6, split="test", vocabulary=vocabulary
    )
    loaded = BPTT.load(tmp_path / "learner.pt", env=test)
    windows = test.unwrapped.windows()
    assert evaluate_sequences(loaded, *windows) == evaluate_sequences(learner, *windows)
