"""One comparison of two observation sets, section by section (snapshots/sections.py):
the snapshot test's (a recording against this run) and ``lm-probes diff``'s (two recordings).
Within one machine class every section is compared strictly; across classes by the
cross-class rules (snapshots/cross_class.py), with the card's measured bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_probes.numerics import coarsest, resolution
from lm_probes.section_specs import cross_class_units, default_tolerances
from lm_probes.snapshots import sections
from lm_probes.snapshots.differences import Context, Difference

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


def compare(
    recorded: dict[str, Any],
    current: dict[str, Any],
    *,
    tolerances: dict[str, Any] | None = None,
    subject: Subject | None = None,
    recorded_provenance: dict[str, Any] | None = None,
    current_provenance: dict[str, Any] | None = None,
    classes: tuple[str, str] | None = None,
) -> list[Difference]:
    """Every difference between two observation sets, judged by the tolerances, in the
    order of snapshots/sections.py.

    ``subject`` (through its session's results) gives access to the current
    run's logits, to judge a greedy flip; without it (two recorded sets) a flip is judged
    from both sides' recorded margins and runners-up. ``classes``: the (recorded, current)
    machine classes; where they differ, the cross-class rules apply with the card's
    measured ``tolerances.cross_class`` bounds."""
    tolerances = dict(tolerances or {})
    measured = tolerances.pop("cross_class", None) or {}
    recorded_provenance, current_provenance = recorded_provenance or {}, current_provenance or {}
    tol: dict[str, Any] = {**default_tolerances(), **tolerances}
    across = classes is not None and classes[0] != classes[1]
    if across:
        tol = cross_class_tolerances(tol, measured, recorded_provenance, current_provenance)
    context = Context(tol, across, subject, recorded, current, recorded_provenance, current_provenance)
    out: list[Difference] = []
    has_model = ("next_token" in recorded, "next_token" in current)
    for section in sections.all_sections():
        name = section.name
        if section.needs_model and has_model[0] != has_model[1]:
            continue  # reported once below
        unknown_to = _recorded_before(name, recorded, current, recorded_provenance, current_provenance)
        if unknown_to is not None and all(has_model):
            out.append(
                Difference(
                    "warning",
                    name,
                    f"not compared: {unknown_to} was recorded by an lm-probes that did not observe {name} yet "
                    "(re-record it to compare this section)",
                )
            )
        elif section.leavable and all(has_model) and (name in recorded) != (name in current):
            had, has = ("has it", "leaves it out") if name in recorded else ("leaves it out", "has it")
            out.append(
                Difference(
                    "error", name, f"the snapshot {had}, this run {has} (the card's snapshot.leave_out changed?)"
                )
            )
        # each section is compared where both sides hold it (a snapshot from before U2-U4 holds none of those)
        elif name in recorded and name in current:
            try:
                out += section.compare(recorded[name], current[name], context)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                # a file edited by hand or by another tool: the rules read the shape this lm-probes
                # records, so a value of another shape is the file's fault, said as such
                raise SnapshotShapeError(
                    f"section '{name}' does not hold what lm-probes records there ({type(exc).__name__}: {exc})"
                ) from exc
    if has_model[0] != has_model[1]:
        out.append(Difference("error", "model", "the snapshot and this run disagree on whether there is a model"))
    known = {section.name for section in sections.all_sections()}
    for name in sorted({*recorded, *current} - known):
        # a newer lm-probes' section, or a plugin's that this run did not load: said, not silently passed
        out.append(
            Difference(
                "warning",
                name,
                f"not compared: no registered section reads '{name}' (a newer lm-probes records it, or a plugin "
                "that registers it is not loaded: docs/extending.md)",
            )
        )
    return out


def _recorded_before(
    name: str, recorded: dict[str, Any], current: dict[str, Any], recorded_prov: dict[str, Any], current_prov: dict
) -> str | None:
    """Which side ('the snapshot', 'this run') lacks section ``name`` because it was recorded
    before lm-probes observed it: its provenance lists the sections it knew (or predates the
    list, from before answer_ends) and ``name`` is not among them. None: both hold it, or the
    side that lacks it knew it, so its card left it out."""
    for side, data, prov in (("the snapshot", recorded, recorded_prov), ("this run", current, current_prov)):
        other = current if data is recorded else recorded
        if name not in data and name in other and name not in prov.get("sections", PRE_LIST_SECTIONS):
            return side
    return None


# what the lm-probes that first listed its sections in a snapshot's provenance ("sections")
# observed before: a file without the list knew these and no later one
PRE_LIST_SECTIONS = (
    "tokenizer",
    "next_token",
    "temperature",
    "greedy",
    "embedding",
    "sampled",
    "first_tokens",
    "generation",
    "hidden_states",
    "attention",
)


class SnapshotShapeError(ValueError):
    """A recorded section whose values are not of the shape the rules compare."""


def compute_dtype(provenance: dict[str, Any]) -> str:
    """The dtype a recorded side's kernels computed in: the numerics fingerprint's (which
    knows bitsandbytes' packed bfloat16 path), else the provenance's model dtype."""
    numerics = provenance.get("numerics") or {}
    return numerics.get("compute_dtype_ran") or numerics.get("model_dtype") or provenance.get("dtype") or "float32"


def cross_class_tolerances(
    same_class: dict[str, float], measured: dict[str, float], provenance_a: dict[str, Any], provenance_b: dict[str, Any]
) -> dict[str, float]:
    """The cross-class bounds for two sides: the card's measured ones where it states them,
    else cross_class_units() x the coarser compute dtype's resolution, never below ``same_class``."""
    dtype = coarsest(compute_dtype(provenance_a), compute_dtype(provenance_b))
    unit = resolution(dtype)
    out = dict(same_class)
    for key, units in cross_class_units().items():
        out[key] = float(measured[key]) if key in measured else max(same_class.get(key, 0.0), units * unit)
    out["dtype"] = dtype  # type: ignore[assignment]  # named in the verdict
    return out


def summary_line(
    recorded_prov: dict[str, Any],
    current_prov: dict[str, Any],
    differences: list[Difference],
    classes: tuple[str, str] | None = None,
) -> str:
    """'transformers 4.57.6 -> 5.23.0: 1 error, 2 warnings (greedy.bos near-tie)'; across
    machine classes it starts 'machine class A -> B (cross-class rules)'."""
    changed = [
        f"{k} {recorded_prov.get(k)} -> {current_prov.get(k)}"
        for k in (
            "torch",
            "transformers",
            "tokenizers",
            "bitsandbytes",
            "device",
            "dtype",
            "quantization",
            "cpu threads",
        )
        if recorded_prov.get(k) != current_prov.get(k)
    ]
    if classes is not None and classes[0] != classes[1]:
        changed.insert(0, f"machine class {classes[0]} -> {classes[1]} (cross-class rules)")
    head = ", ".join(changed) if changed else "same versions and machine class"
    errors = [d for d in differences if d.severity == "error"]
    warnings_ = [d for d in differences if d.severity == "warning"]
    if not differences:
        return f"{head}: no change beyond tolerance"
    parts = []
    if errors:
        parts.append(f"{len(errors)} error(s) in {', '.join(sorted({d.where for d in errors}))}")
    if warnings_:
        parts.append(f"{len(warnings_)} warning(s) in {', '.join(sorted({d.where for d in warnings_}))}")
    return f"{head}: " + "; ".join(parts)
