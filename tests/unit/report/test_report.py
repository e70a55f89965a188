"""lm_probes/report/html.py: the report's tables are built from data, every value escaped once."""

from __future__ import annotations

from lm_probes.report import html as report


def test_a_table_escapes_every_cell_and_renders_emphasis():
    page = report.table(
        ["id", "<piece>"],
        [[1, "<s>"], [report.Cell("a&b", code=True, strong=True, highlight=True), "x"]],
        caption="1:<s> 415:The",
    )
    assert page.startswith("<p>1:&lt;s&gt; 415:The</p><table ")
    assert "<th>&lt;piece&gt;</th>" in page and "<td>&lt;s&gt;</td>" in page
    assert "<td class='changed'><b><code>a&amp;b</code></b></td>" in page
    assert "<s>" not in page  # a token such as <s> never reaches the page as markup


def test_the_behavioural_tests_pass_data_not_markup():
    """Issue 12: no test under tests/behaviour writes markup or escapes by hand any more
    (attach.table / attach.texts / attach.png take data)."""
    from lm_probes.paths import REPO_ROOT

    for path in sorted((REPO_ROOT / "tests" / "behaviour").glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        found = [markup for markup in ("<table", "<tr>", "<p>", "<ol>", "html.escape") if markup in source]
        assert not found, f"{path.name} writes {found}"


def test_the_summary_template_escapes_data_once_and_keeps_the_fragments():
    """templates/summary.html.j2 (autoescaped) renders the sections from data: a card
    name is escaped, a test's table fragment is not escaped a second time."""
    page = report.summary_html(
        subjects=[
            {
                "card": "<x>",
                "model_source": "m",
                "device": "cpu",
                "dtype": "float32",
                "quantization": "none",
                "revision": "-",
                "files": {"m.gguf": "abc"},
            }
        ],
        observations={("c", "D1"): ["passed", "failed"], ("d", "T1"): ["passed"]},
        snapshots={},
        benchmarks=None,
        fragments={"Figures": {"c": [report.table(["a"], [["<b>"]])]}},
    )
    assert "<tr><td>&lt;x&gt;</td><td>m</td>" in page and "m.gguf: sha256 abc…" in page
    assert "failed (2)</td><td>not covered</td></tr>" in page  # card c: D1 worst of two, T1 unchecked
    assert "<h2>Figures</h2>" in page and "<h3>c</h3>" in page
    assert "<td>&lt;b&gt;</td>" in page and "&amp;lt;" not in page
    assert "<h2>Changes since snapshot</h2>" not in page and "<h2>Benchmarks</h2>" not in page
