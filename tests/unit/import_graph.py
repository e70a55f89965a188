"""The import graph of a package, as Python runs it: every import of a project module, at the
top of a module or inside a function, except those under ``if TYPE_CHECKING:`` (annotations
only, never executed). Used by test_lint.py to hold the layout to its measures."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for a package folder (``lm_probes`` -> ``lm_probes/...``)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for statement in node.body for n in ast.walk(statement)}
    return skipped


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(modules: dict[str, Path], type_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports at run time (with ``type_only``, also those
    under ``if TYPE_CHECKING:``: a type-only import is a reach across stages too)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = set() if type_only else _type_checking_nodes(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found |= {_owner(a.name, modules) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    found.add(target if target in modules else _owner(base, modules))
        graph[module] = {m for m in found if m and m != module}
    return graph


def levels(graph: dict[str, set[str]]) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """Each module's level (1: imports no project module; else one more than the deepest
    module it imports) and the import cycles found on the way."""
    cycles: list[tuple[str, ...]] = []

    @cache
    def level(module: str, path: tuple[str, ...] = ()) -> int:
        if module in path:
            cycles.append(path[path.index(module) :] + (module,))
            return 0
        return 1 + max((level(d, path + (module,)) for d in graph[module]), default=0)

    return {m: level(m) for m in graph}, cycles


# The house's stages in the order data flows (README, "Layout": card -> source -> subject ->
# probe -> result -> check / snapshot / report -> plugin / cli), each a list of module-name
# prefixes; the longest prefix that matches places a module. A module imports only from its
# own stage or an earlier one.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",  # what every stage reads: paths, numbers, the shared inputs, the sections' names
        (
            "lm_probes",
            "lm_probes.paths",
            "lm_probes.exit_codes",
            "lm_probes.inputs",
            "lm_probes.section_specs",
            "lm_probes.registry",
            "lm_probes.maths",
            "lm_probes.numerics",
            "lm_probes.timing",
            "lm_probes.ledger",
            "lm_probes.environment",
            "lm_probes.memory",
        ),
    ),
    ("card and source", ("lm_probes.cards",)),
    ("subject", ("lm_probes.subjects",)),
    (
        "probe",
        tuple(
            f"lm_probes.{name}"
            for name in (
                "tokenizer",
                "embedding",
                "prompt_cache",
                "generate_calls",
                "generation",
                "decoding",
                "batching",
                "sampling",
                "generation_settings",
                "hidden_states",
                "attention",
                "quantization",
                "stopping",
            )
        ),
    ),  # fmt: skip
    ("result", ("lm_probes.subjects.results", "lm_probes.subjects.memo", "lm_probes.subjects.drift")),
    (
        "check, snapshot, report",
        (
            "lm_probes.expect",
            "lm_probes.snapshots",
            "lm_probes.report",
            "lm_probes.served",
            "lm_probes.draft",
            "lm_probes.progress",
        ),
    ),
    ("plugin and command line", ("lm_probes.plugin", "lm_probes.cli")),
)


def stage_of(module: str) -> int:
    """The index in STAGES of a module's stage; KeyError for a module no stage names."""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None or (best == len("lm_probes") and module != "lm_probes"):
        raise KeyError(f"{module} is in no stage of import_graph.STAGES: place it")
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a later stage by an earlier one, as a line."""
    return sorted(
        f"{module} ({STAGES[stage_of(module)][0]}) imports {target} ({STAGES[stage_of(target)][0]})"
        for module, targets in graph.items()
        for target in targets
        if stage_of(target) > stage_of(module)
    )
