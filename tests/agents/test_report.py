"""README tables from committed results (`bpl report`): the README shows what the committed
results.json files say, and (slow) each quick reproduction, rerun with the command it records,
gives the committed numbers."""

import json
import pathlib
import shlex

import pytest

from agents.cli import main
from agents.experiments.report import BLOCK, render_block, update_markdown

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
QUICK = sorted(p.parent for p in RESULTS.glob("*_quick/results.json"))
WALL_TIMES = {"elapsed_s", "cell_seconds", "seconds"}


def test_the_readme_blocks_equal_what_bpl_report_renders_from_the_committed_results():
    assert update_markdown(README, write=False) == [], (
        "a README results block differs from its results.json: run `bpl report --readme README.md`"
    )


def test_every_committed_quick_result_is_shown_in_the_readme():
    shown = {match["folder"] for match in BLOCK.finditer(README.read_text())}
    assert QUICK, "no committed docs/results/*_quick/results.json"
    assert {str(folder.relative_to(ROOT)) for folder in QUICK} <= shown


def _results_folder(root: pathlib.Path, table: str = "| a |\n|---|\n| 1 |\n") -> pathlib.Path:
    folder = root / "res"
    folder.mkdir()
    (folder / "results.json").write_text(
        json.dumps(
            {
                "command": "bpl reproduce toy --quick --workers 2",
                "elapsed_s": 12.3,
                "workers": 2,
                "table": table,
                "figures": ["a.png"],
            }
        )
    )
    return folder


def test_report_renders_the_command_time_table_and_figures(tmp_path):
    _results_folder(tmp_path)
    assert render_block("res", tmp_path) == (
        "`bpl reproduce toy --quick --workers 2`: 12 s on 2 worker(s) "
        "([results.md](res/results.md)).\n\n| a |\n|---|\n| 1 |\n\n![a.png](res/a.png)\n"
    )


def test_report_check_fails_on_a_stale_block_and_report_rewrites_it(tmp_path, capsys, monkeypatch):
    folder = _results_folder(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\nprose\n\n<!-- bpl report res -->\nold table\n"
        "<!-- end bpl report -->\n\nmore prose\n"
    )
    assert main(["report", "--readme", str(readme), "--check"]) == 1
    assert "['res']" in capsys.readouterr().out and "old table" in readme.read_text()
    assert main(["report", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nprose\n\n<!-- bpl report res -->\n`bpl reproduce toy")
    assert text.endswith("<!-- end bpl report -->\n\nmore prose\n")
    assert main(["report", "--readme", str(readme), "--check"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["report", "res"]) == 0
    assert capsys.readouterr().out.startswith("`bpl reproduce toy --quick --workers 2`")
    (folder / "results.json").write_text("{")
    with pytest.raises(SystemExit):
        main(["report", "--readme", str(readme)])
    assert str(folder / "results.json") in capsys.readouterr().err


def _table_without_time_columns(text):
    """Markdown tables (and the text around them) without their "... time (s)" columns."""
    lines, timed = [], None  # timed: the column indices of the current table's time columns
    for line in text.split("\n"):
        if not line.startswith("|"):
            lines.append(line)
            timed = None
            continue
        cells = line.strip("|").split("|")
        if timed is None:  # a table's first row is its header
            timed = [i for i, cell in enumerate(cells) if cell.strip().endswith("time (s)")]
        lines.append("|".join(c for i, c in enumerate(cells) if i not in timed))
    return "\n".join(lines)


def test_wall_time_columns_are_left_out_of_the_comparison():
    table = "intro\n\n| a | train time (s) | b |\n|---|---|---|\n| 1 | 84 | 2 |\n"
    assert _table_without_time_columns(table) == "intro\n\n a | b \n---|---\n 1 | 2 \n"


def _without_wall_times(value):
    if isinstance(value, dict):
        return {
            k: _table_without_time_columns(v) if k == "table" else _without_wall_times(v)
            for k, v in value.items()
            if k not in WALL_TIMES
        }
    if isinstance(value, list):
        return [_without_wall_times(v) for v in value]
    return value


@pytest.mark.slow
@pytest.mark.parametrize("folder", QUICK, ids=[folder.name for folder in QUICK])
def test_a_quick_result_reproduces_with_its_command(folder, tmp_path):
    committed = json.loads((folder / "results.json").read_text())
    argv = shlex.split(committed["command"])
    assert argv[0] == "bpl"
    assert main([*argv[1:], "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    rerun = json.loads((tmp_path / "out" / "results.json").read_text())
    assert _without_wall_times(rerun) == _without_wall_times(committed)
