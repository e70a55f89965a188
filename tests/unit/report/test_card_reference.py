"""Every card field documented where users look: docs/cards.md is what the generator writes,
every field says what it means and which observations it drives, and the README's example
card and test work as written (split from test_cards.py, issue 36)."""

from __future__ import annotations

from lm_probes.cards.card import load_card

# ------------------------------------------ issue 15: every field documented where users look


def test_the_committed_card_reference_is_the_generated_one():
    """docs/cards.md lists every card field with its type, default, meaning and the
    observations whose tests read it: regenerate it with
    `python -m lm_probes.report.card_reference > docs/cards.md` when the schema changes."""
    from lm_probes.report.card_reference import CARD_REFERENCE_FILE, card_reference

    assert CARD_REFERENCE_FILE.read_text(encoding="utf-8") == card_reference(), (
        "docs/cards.md is out of date: run `python -m lm_probes.report.card_reference > docs/cards.md`"
    )


def test_every_card_field_says_what_it_means():
    from lm_probes.report.card_reference import card_reference

    tables = card_reference().split("## Sources")
    fields = [[c.strip() for c in line.strip("|").split(" | ")] for line in tables[0].splitlines() if line[:3] == "| `"]
    sources = [
        [c.strip() for c in line.strip("|").split(" | ")] for line in tables[1].splitlines() if line[:3] == "| `"
    ]
    assert len(fields) > 100 and {len(row) for row in fields} == {5} and {len(row) for row in sources} == {6}
    undocumented = [row[0] for row in fields if not row[3]] + [f"{row[0]} {row[2]}" for row in sources if not row[5]]
    assert undocumented == [], f"fields without a description (Field(description=...)): {undocumented}"


def test_the_reference_names_the_observations_a_field_drives():
    from lm_probes.report.card_reference import card_reference

    reference = card_reference()
    assert "| `expect.next_token.top1` | text | required | the most likely next token's text | D1 |" in reference
    assert "| `expect.tokenizer.special_text[].ids` |" in reference and "| U6 |" in reference


def test_the_readme_card_is_a_valid_card(tmp_path):
    """The README's example card reads and validates as it is written there."""
    from lm_probes.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    text = readme.split("## A card", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my-smollm2.yaml"
    path.write_text(text, encoding="utf-8")
    card = load_card(path)
    assert card.has_expectation("next_token.top1") and card.expected("greedy.with_bos_contains") == ["Tokyo"]


def test_the_readme_example_test_imports_every_name_it_uses():
    """The README's example test, run as a module: its imports resolve, and every name it
    uses is imported or a builtin (before, issue 36: it had no imports at all)."""
    import ast
    import builtins

    from lm_probes.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("## A behavioural test", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the imports run; the test is only defined
    tree = ast.parse(code)
    bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for a in node.args}
    bound |= {
        t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert used - bound - set(namespace) - set(dir(builtins)) == set()
