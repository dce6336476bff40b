"""Output folders: ``--force`` deletes only what bp-lambda wrote, writes are atomic.

Regression tests for a data-loss bug: ``--force`` used to delete the whole ``--out`` folder,
including files the library never wrote (``bpl train ... --out ../paper --force`` deleted an
unrelated ``thesis.tex``; ``--out . --force`` emptied the current directory).
"""

import json
import pathlib

import pytest

from agents.cli import main
from agents.experiments.output import write_json, write_text
from agents.experiments.output_folder import (
    MANIFEST,
    OutputExistsError,
    atomic_write,
    prepare_output_dir,
    record_output,
    remove_recorded_outputs,
)


def tiny_train(out, *extra):
    return [
        "train",
        "bpl/LineDraw-v0",
        "--num-envs",
        "2",
        "--hidden-size",
        "3",
        "--updates",
        "1",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_force_refuses_a_folder_bpl_did_not_write_and_deletes_nothing(tmp_path, capsys):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "thesis.tex").write_text("\\chapter{Results}\n")
    (paper / "figures").mkdir()
    (paper / "figures" / "plot.pdf").write_bytes(b"%PDF")
    before = tree(paper)
    err = usage_error(capsys, tiny_train(paper, "--force"))
    assert "did not write" in err and MANIFEST in err and "nothing was deleted" in err
    assert tree(paper) == before
    err = usage_error(capsys, tiny_train(paper))  # without --force: says --force won't help
    assert "will not replace it either" in err and tree(paper) == before


@pytest.mark.parametrize("where", ["cwd", "parent"])
def test_force_never_touches_the_current_directory_or_a_parent(
    tmp_path, monkeypatch, capsys, where
):
    work = tmp_path / "work"
    prepare_output_dir(work, force=False)  # even a folder that carries our manifest
    write_text(work / "results.md", "earlier results")
    (work / "notes.txt").write_text("mine")
    inner = work / "project"
    inner.mkdir()
    (inner / "main.py").write_text("print()")
    monkeypatch.chdir(work if where == "cwd" else inner)
    out = "." if where == "cwd" else ".."
    before = tree(work)
    err = usage_error(capsys, tiny_train(out, "--force"))
    assert "current directory or one of its parents" in err
    assert tree(work) == before


def test_force_refuses_the_home_directory(tmp_path, monkeypatch):
    home = tmp_path / "home"
    prepare_output_dir(home, force=False)
    write_text(home / "results.md", "x")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(OutputExistsError, match="home directory"):
        prepare_output_dir(home, force=True)
    assert (home / "results.md").read_text() == "x"


def test_force_replaces_an_earlier_run_and_keeps_files_the_user_added(tmp_path):
    out = tmp_path / "run"
    assert main(tiny_train(out)) == 0
    written = set(tree(out))
    assert {
        "checkpoint.pt",
        "run.json",
        "metrics.json",
        "progress.csv",
        "config.yaml",
        "learning_curve.png",
        MANIFEST,
    } <= written
    assert any(name.startswith("events.out.tfevents.") for name in written)
    recorded = json.loads((out / MANIFEST).read_text())["entries"]
    assert all(any(pathlib.PurePath(n).match(e) for e in recorded) for n in written - {MANIFEST})
    (out / "my_notes.md").write_text("keep me")
    with pytest.warns(UserWarning, match="my_notes.md"):
        assert main(tiny_train(out, "--force")) == 0
    assert (out / "my_notes.md").read_text() == "keep me"
    assert len([n for n in tree(out) if n.startswith("events.out.tfevents.")]) == 1  # no stale


def test_force_on_a_sweep_recurses_through_the_cells_manifests(tmp_path):
    out = prepare_output_dir(tmp_path / "sweep", force=False)
    write_text(out / "summary.md", "table")
    for name in ("cell_a", "cell_b"):
        record_output(out / name, folder=True)
        prepare_output_dir(out / name, force=False)
        write_json(out / name / "metrics.json", {"loss": 1.0})
    (out / "cell_b" / "user.txt").write_text("user data")  # a foreign file inside a cell
    (out / "unrelated").mkdir()
    (out / "unrelated" / "data.csv").write_text("1,2")
    kept = remove_recorded_outputs(out)
    assert [p.name for p in kept] == ["cell_b", "unrelated"]
    assert not (out / "cell_a").exists() and not (out / "summary.md").exists()
    assert tree(out) == {"cell_b/user.txt": b"user data", "unrelated/data.csv": b"1,2"}


def test_manifest_entries_cannot_reach_outside_the_folder_or_through_links(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    (target_dir / "results.md").write_text("precious too")
    out = prepare_output_dir(tmp_path / "out", force=False)
    (out / "linked").symlink_to(target_dir, target_is_directory=True)
    (out / "results.md").symlink_to(target_dir / "results.md")
    entries = ["../outside.txt", str(outside), "linked/", "results.md", "..", "/"]
    (out / MANIFEST).write_text(json.dumps({"format": 1, "entries": entries}))
    remove_recorded_outputs(out)
    assert outside.read_text() == "precious"
    assert (target_dir / "results.md").read_text() == "precious too"
    assert (out / "results.md").is_symlink() and (out / "linked").is_symlink()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"format": 2, "entries": []}',
        '{"format": 1, "entries": "results.md"}',
    ],
)
def test_an_unreadable_manifest_means_not_ours(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(content)
    (out / "results.md").write_text("x")
    with pytest.raises(OutputExistsError, match="did not write"):
        prepare_output_dir(out, force=True)
    assert (out / "results.md").read_text() == "x"


def test_an_interrupted_write_leaves_the_previous_file_intact(tmp_path):
    out = prepare_output_dir(tmp_path / "out", force=False)
    write_json(out / "results.json", {"accuracy": 0.9})

    def half_then_fail(file):
        file.write(b'{"accuracy": 0.')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(out / "results.json", half_then_fail)
    assert json.loads((out / "results.json").read_text()) == {"accuracy": 0.9}
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "results.json"]


def test_record_output_refuses_names_that_are_not_plain(tmp_path):
    out = prepare_output_dir(tmp_path / "out", force=False)
    with pytest.raises(ValueError, match="not a plain name"):
        record_output(out / "results*.json")
    record_output(out / "events.*", pattern=True)  # explicit patterns are allowed
    assert json.loads((out / MANIFEST).read_text())["entries"] == ["events.*"]
