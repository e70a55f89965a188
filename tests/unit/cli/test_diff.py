"""`lm-probes diff` and `lm-probes upgrade-check` (issue 14): two recorded observation
sets compared, one report, an exit code. Recorded sets stand in for the two
environments, so CI builds none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lm_probes.cli import environments, upgrade_check
from lm_probes.cli import main as cli
from lm_probes.paths import REPO_ROOT
from lm_probes.report.section_changes import word_diff
from lm_probes.snapshots import sets, token_rules
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.record import record
from tests.unit.conftest import tiny, tokenizer_subject

COMMITTED = REPO_ROOT / "fixtures" / "snapshots"


def _set_of(tmp_path: Path, name: str, *subjects) -> Path:
    """An observation set recorded from the given subjects, as --lm-probes-snapshot-update writes it."""
    folder = tmp_path / name
    for subject in subjects:
        record(subject, folder)
    return folder


def _copy(tmp_path: Path, card: str, name: str) -> Path:
    folder = tmp_path / name / card
    folder.mkdir(parents=True)
    shutil.copy(COMMITTED / card / "cpu.json", folder / "cpu.json")
    return folder.parent


def test_the_committed_set_against_itself_exits_0_and_counts_every_section_unchanged(tmp_path):
    """Two equal versions: the comparison logic on two recorded sets finds nothing."""
    report = tmp_path / "diff.html"
    assert cli.main(["diff", str(COMMITTED), str(COMMITTED), "--html", str(report)]) == sets.SAME
    page = report.read_text(encoding="utf-8")
    assert "No difference beyond tolerance: exit code 0." in page
    assert (
        "10 section(s): tokenizer, next_token, temperature, greedy, embedding, sampled, answer_ends, generation" in page
    )


def test_a_recorded_tokenizer_break_exits_1_and_the_report_names_card_section_and_both_values(tmp_path, capsys):
    """The break: the Mistral tokenizer with legacy flipped, recorded. The harmless change:
    the same tokenizer recorded again under another thread count (exit 0)."""
    before = _copy(tmp_path, "mistral-tokenizer", "before")
    broken = _set_of(tmp_path, "broken", _renamed(tokenizer_subject(legacy=False), "mistral-tokenizer"))
    report = tmp_path / "broken.html"
    code = cli.main(["diff", str(before), str(broken), "--html", str(report), "--json", str(tmp_path / "d.json")])
    assert code == sets.DIFFERENT
    summary = capsys.readouterr().out  # (this process's thread count may differ from the recording's)
    assert summary.startswith("mistral-tokenizer: ") and ": 6 error(s) in tokenizer.ids['<s>Hello']" in summary
    page = report.read_text(encoding="utf-8")
    assert '<td>mistral-tokenizer</td><td>tokenizer</td><td>6</td><td class="error">error</td>' in page
    assert "[1, 22557, 28705, 1, 1526] -&gt; [1, 22557, 28705, 1, 9471], first difference at position 4" in page
    data = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert data[0]["card"] == "mistral-tokenizer" and len(data[0]["differences"]) == 6

    harmless = tmp_path / "harmless" / "mistral-tokenizer"
    harmless.mkdir(parents=True)
    snapshot = json.loads((before / "mistral-tokenizer" / "cpu.json").read_text(encoding="utf-8"))
    snapshot["provenance"]["cpu threads"], snapshot["provenance"]["recorded"] = "2", "2026-11-25 00:00 UTC"
    (harmless / "cpu.json").write_text(json.dumps(snapshot), encoding="utf-8")
    assert cli.main(["diff", str(before), str(harmless.parent), "--html", str(report)]) == sets.SAME
    assert "<td class='changed'>cpu threads</td>" in report.read_text(encoding="utf-8")  # shown, not a difference


def _renamed(subject, name: str):

    subject.card = subject.card.replace(name=name)
    return subject


def test_a_recorded_greedy_flip_shows_where_the_texts_part_as_a_word_diff(tmp_path):
    """The break: a weight change that flips tiny-mistral's first greedy token, recorded."""
    from tests.unit.break_patches import flip_first_greedy_token

    before = _copy(tmp_path, "tiny-mistral", "before")
    broken = _set_of(tmp_path, "broken", flip_first_greedy_token(tiny()))
    report = tmp_path / "diff.html"
    assert cli.main(["diff", str(before), str(broken), "--html", str(report)]) == sets.DIFFERENT
    page = report.read_text(encoding="utf-8")
    assert "<h3>Greedy (bos): the texts part at new token 0</h3>" in page
    assert "<del>" in page and "<ins>" in page
    assert "top-1 minus top-2 logit at that step:" in page


def test_word_diff_marks_removed_and_added_words():
    assert word_diff("Tokyo. The Alps are tall", "Tokyo. The Alps are a range") == (
        "Tokyo. The Alps are <del>tall</del> <ins>a range</ins>"
    )


def test_device_classes_fall_back_to_the_nearest_and_say_so():
    assert sets.pick_device_classes(["cpu", "cuda-sm90"], ["cuda-sm90", "cpu"]) == ("cpu", "cpu", "")
    a, b, note = sets.pick_device_classes(["cuda-sm90"], ["cuda-sm80", "cuda-sm89", "cpu"])
    assert (a, b) == ("cuda-sm90", "cuda-sm89") and "the nearest" in note and "cross-class rules" in note
    a, b, _ = sets.pick_device_classes(
        ["cpu-bnb-float16"], ["cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16", "cpu-bnb-packed-bfloat16"]
    )
    assert (a, b) == ("cpu-bnb-float16", "cpu-bnb-packed-bfloat16")


def test_two_machine_classes_are_compared_across_naming_both_and_showing_both_fingerprints(tmp_path, capsys):
    """The NF4 card's set of this project's AMD EPYC against the Intel Xeon's: the verdict
    names both classes, both fingerprints are shown (terminal and page), the cross-class
    rules pass; the same two files forced into one class fail strictly."""
    card = "smollm2-135m-instruct-nf4"
    ours, xeon = "cpu-bnb-packed-bfloat16", "cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16"
    for side, name in (("a", ours), ("b", xeon)):
        (tmp_path / side / card).mkdir(parents=True)
        shutil.copy(COMMITTED / card / f"{name}.json", tmp_path / side / card / f"{name}.json")
    report = tmp_path / "diff.html"
    assert cli.main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--html", str(report)]) == sets.SAME
    out = capsys.readouterr().out
    assert f"machine class {ours} -> {xeon} (cross-class rules): no change beyond tolerance" in out
    assert "asked float16, computed bfloat16: bitsandbytes' AVX512-BF16 CPU kernel" in out
    assert "Intel(R) Xeon(R) Processor" in out and "oneDNN on (half-precision kernels here: bf16+fp16)" in out
    page = report.read_text(encoding="utf-8")
    assert "<h3>Numerics fingerprints</h3>" in page and "The machine classes differ" in page
    shutil.move(tmp_path / "b" / card / f"{xeon}.json", tmp_path / "b" / card / f"{ours}.json")
    assert cli.main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--html", str(report)]) == sets.DIFFERENT


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["/no/such/folder", str(COMMITTED)], "/no/such/folder is neither a snapshot folder nor a snapshot file"),
        ([str(COMMITTED), str(COMMITTED), "--card", "gpt-9"], "card(s) gpt-9 not on both sides"),
    ],
)
def test_bad_input_exits_4_with_the_reason(arguments, message, capsys, tmp_path):
    assert cli.main(["diff", *arguments, "--html", str(tmp_path / "r.html")]) == sets.BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()  # nothing written for a comparison that did not happen


def test_a_usage_error_exits_4(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["diff", str(COMMITTED)])
    assert exit_.value.code == sets.BAD_INPUT and "required: b" in capsys.readouterr().err


# ------------------------------------------------------------------- upgrade-check


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_plan_pins_torch_first_and_everything_but_the_moved_package(installer, capsys, tmp_path, monkeypatch):
    """pip resolves (uv then installs its list) or pip builds: torch pinned either way, the
    other packages pinned by constraints.txt less the moved one."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LM_PROBES_INSTALLER", installer)
    monkeypatch.setattr(environments.installers, "uv_binary", lambda: "/bin/uv" if installer == "uv" else None)
    code = cli.main(["upgrade-check", "--from", "transformers==4.57.6", "--to", "transformers==5.23.0", "--dry-run"])
    assert code == sets.SAME
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    first_install = next(line for line in lines if " pip install " in line)
    if installer == "pip":
        assert first_install.endswith("torch==2.13.0")
    else:  # the dry run: torch pinned before the constraints, then uv's venv and install of its list
        assert "--dry-run" in first_install and first_install.index("torch==2.13.0") < first_install.index(" -c ")
        assert any(line.startswith("/bin/uv pip install") and "resolved.txt" in line for line in lines)
    assert "transformers==4.57.6" in out and "constraints-side.txt" in out and "--lm-probes-snapshot-update" in out
    side = environments.Side("from", ("transformers==4.57.6",))
    env = environments.environment_dir(side, "torch==2.13.0")
    env.mkdir(parents=True)
    kept = environments.side_constraints(side, env).read_text(encoding="utf-8")
    assert "transformers==" not in kept and "tokenizers==" in kept and "pydantic==" in kept


def test_a_side_that_cannot_be_built_exits_2_saying_why(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))

    def failing(command, what):
        raise environments.SideFailed(
            f"{what} failed (exit 1): pip install transformers==0.0.0\nNo matching distribution"
        )

    monkeypatch.setattr(environments, "run", failing)
    # past pip's dry run (which refuses 0.0.0 itself: test_environments.py): a build step that fails
    monkeypatch.setattr(
        environments,
        "resolve_sides",
        lambda sides, torch_pin, rebuild=False: {s.label: environments.Resolution(True) for s in sides},
    )
    code = cli.main(
        ["upgrade-check", "--from", "transformers==0.0.0", "--to", "transformers==5.23.0", "--output", str(tmp_path)]
    )
    assert code == sets.COULD_NOT_RUN
    assert "creating the 'from' environment failed" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_upgrade_check_refuses_a_report_path_it_cannot_write_before_building(monkeypatch, tmp_path, capsys):
    """--html naming a folder is found before any environment is resolved or built (exit 4);
    the twin: a report path in folders still to be made gets past that check to the build."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    built = []
    monkeypatch.setattr(environments, "resolve_sides", lambda *a, **k: built.append("resolve") or {})

    def stop(*args, **kwargs):
        raise environments.SideFailed("stopped here")

    monkeypatch.setattr(environments, "prepare", stop)
    argv = [
        "upgrade-check",
        "--from",
        "transformers==5.22.0",
        "--to",
        "transformers==5.23.0",
        "--output",
        str(tmp_path),
    ]
    assert cli.main([*argv, "--html", str(tmp_path)]) == sets.BAD_INPUT
    assert "is a folder" in capsys.readouterr().err and not built
    assert cli.main([*argv, "--html", str(tmp_path / "new" / "r.html")]) == sets.COULD_NOT_RUN
    assert built == ["resolve"] and "stopped here" in capsys.readouterr().err


def test_run_with_builds_the_upgrade_check_environment_and_forwards_what_follows_the_dashes(
    capsys, tmp_path, monkeypatch
):
    """One builder for both commands (tox.ini is gone): run-with plans the same cached
    environment upgrade-check would build for those requirements, and hands pytest only what
    follows ``--``; another command given arguments after ``--`` is a usage error."""
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    code = cli.main(["run-with", "transformers==4.57.6", "--dry-run", "--", "tests/behaviour/test_snapshot.py", "-q"])
    assert code == sets.SAME
    out = capsys.readouterr().out
    env = environments.environment_dir(environments.Side("from", ("transformers==4.57.6",)), "torch==2.13.0")
    assert f"environment {env}" in out  # the very folder the upgrade check's "from" side uses
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith(
            "-m pytest --html="
            + str(REPO_ROOT / "reports" / f"report-{env.name}.html")
            + " tests/behaviour/test_snapshot.py -q"
        )
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main(["diff", "a", "b", "--", "-q"])
    assert exit_.value.code == sets.BAD_INPUT and "takes no arguments after --" in capsys.readouterr().err


def test_upgrade_check_outside_a_source_checkout_exits_4(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(upgrade_check, "REPO_ROOT", tmp_path)
    assert cli.main(["upgrade-check", "--from", "a==1", "--to", "a==2"]) == sets.BAD_INPUT
    assert "needs a source checkout" in capsys.readouterr().err


# ------------------------------------------- a greedy flip between two recorded sets


def _greedy(ids, margins, runners_up):
    """A model's observation set holding a greedy run (and the next-token entry a model's
    set always has, equal on both sides here)."""
    return {
        "next_token": {"prompt": "p", "prompt_ids": [1], "top_ids": [5, 7], "top_probs": [0.5, 0.4]},
        "temperature": {"entropy": {}},
        "greedy": {"bos": {"prompt_ids": [1], "ids": ids, "text": "", "margins": margins, "runners_up": runners_up}},
    }


@pytest.mark.parametrize(
    "current, severity, says",
    [
        # each side's token is the other's runner-up, both chose by <= logit_tie (0.01)
        (_greedy([7, 9], [0.004, 1.0], [5, 3]), "warning", "a near-tie on both sides"),
        # the new token 8 was nobody's runner-up: not a swap of two near-equal tokens
        (_greedy([8, 9], [0.004, 1.0], [5, 3]), "error", "was not the other side's runner-up"),
        # a swap, but this side chose by 0.5: the scores changed
        (_greedy([7, 9], [0.5, 1.0], [5, 3]), "error", "which is no tie"),
    ],
)
def test_a_recorded_greedy_flip_is_a_near_tie_only_when_both_sides_say_so(current, severity, says):
    recorded = _greedy([5, 9], [0.003, 1.0], [7, 3])
    [difference] = compare(recorded, current)
    assert (difference.severity, difference.where) == (severity, "greedy.bos")
    assert says in difference.message


# ------------------------------- sampled first tokens across versions: a homogeneity test


def _draws(probs: list[float], n: int, seed: int) -> dict[str, int]:
    import numpy as np

    ids = np.random.default_rng(seed).choice(len(probs), size=n, p=probs)
    return {str(i): int((ids == i).sum()) for i in sorted(set(ids.tolist()))}


# a next-token distribution of SmolLM2's kind after T 1.4 and top-p 0.9: a few likely
# tokens, then a tail
NUCLEUS = [0.45, 0.2, 0.1, 0.06, 0.04, *([0.15 / 30] * 30)]


def test_a_changed_first_token_distribution_is_caught_across_versions_and_a_new_seed_is_not():
    """Across versions the 400 draws differ; their distribution must not. The break: a
    sampler whose temperature is ignored (the head of the distribution sharper: 0.62 in
    place of 0.45 for the top token). The harmless change: the same distribution drawn with
    20 other seeds, of which none is rejected (false-positive rate FIRST_TOKEN_ALPHA, 1e-3)."""
    recorded = _draws(NUCLEUS, 400, seed=0)
    sharper = [0.62, 0.18, 0.07, 0.04, 0.02, *([0.07 / 30] * 30)]
    p, _ = token_rules.first_tokens_homogeneity(recorded, _draws(sharper, 400, seed=1))
    assert p < token_rules.FIRST_TOKEN_ALPHA, p
    p_values = [token_rules.first_tokens_homogeneity(recorded, _draws(NUCLEUS, 400, seed=s))[0] for s in range(1, 21)]
    assert min(p_values) > token_rules.FIRST_TOKEN_ALPHA, p_values


def test_the_first_token_check_runs_only_where_the_draws_cannot_simply_be_compared():
    def sampled(counts, seed=0):
        settings = {"top_p": 0.9, "temperature": 1.4}
        ids = sorted(int(token) for token, n in counts.items() for _ in range(n))
        return {"first_tokens": {"seed": seed, "settings": settings, "ids": ids}}

    recorded = sampled(_draws(NUCLEUS, 400, seed=0))
    sharper = sampled(_draws([0.62, 0.18, 0.07, 0.04, 0.02, *([0.07 / 30] * 30)], 400, seed=1))
    same, upgraded = {"transformers": "5.23.0"}, {"transformers": "4.57.6"}
    base = {
        "next_token": {"prompt": "p", "prompt_ids": [1], "top_ids": [5], "top_probs": [0.5]},
        "temperature": {"entropy": {}},
    }

    def compared(a, b, provenance_b):
        return compare(base | a, base | b, recorded_provenance=same, current_provenance=provenance_b)

    [changed] = compared(recorded, sharper, upgraded)
    assert changed.where == "first_tokens" and "chi-square homogeneity p = " in changed.message
    assert compared(recorded, sampled(_draws(NUCLEUS, 400, seed=5)), upgraded) == []  # a new version, same distribution
    [exact] = compared(recorded, sampled(_draws(NUCLEUS, 400, seed=5)), same)  # same provenance: must be the same draws
    assert "changed with the same seed and provenance" in exact.message


@pytest.mark.parametrize(
    "requirement, name",
    [
        ("Transformers==4.57.6", "transformers"),
        ("mistral_common[opencv]>=1.5", "mistral-common"),
        ('zope.interface ; python_version > "3"', "zope-interface"),
    ],
)
def test_a_requirements_project_name_is_read_by_packaging(requirement, name):
    """upgrade-check matches a moved package to the pinned ones by pip's normalised name."""
    assert environments.project_name(requirement) == name
