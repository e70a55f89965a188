"""probes/report.py: the report's tables are built from data, every value escaped once."""

from __future__ import annotations

from probes import report


def test_a_table_escapes_every_cell_and_renders_emphasis():
    page = report.table(
        ["id", "<piece>"],
        [[1, "<s>"], [report.Cell("a&b", code=True, strong=True, highlight=True), "x"]],
        caption="1:<s> 415:The",
    )
    assert page.startswith("<p>1:&lt;s&gt; 415:The</p><table ")
    assert "<th>&lt;piece&gt;</th>" in page and "<td>&lt;s&gt;</td>" in page
    assert f"<td style='{report.HIGHLIGHT}'><b><code>a&amp;b</code></b></td>" in page
    assert "<s>" not in page  # a token such as <s> never reaches the page as markup


def test_the_behavioural_tests_pass_data_not_markup():
    """Issue 12: no test under tests/behaviour writes markup or escapes by hand any more
    (attach.table / attach.texts / attach.png take data)."""
    from probes.cards import REPO_ROOT

    for path in sorted((REPO_ROOT / "tests" / "behaviour").glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        found = [markup for markup in ("<table", "<tr>", "<p>", "<ol>", "html.escape") if markup in source]
        assert not found, f"{path.name} writes {found}"
