"""Parity of a served model with transformers: the same card's observations taken over HTTP
and compared with the in-process ones by the cross-class rules (snapshots/cross_class.py):
tokenizer ids exactly, greedy equal up to a divergence where each side's token is in the
other's top-k, the next-token distribution within the card's measured ``served.parity``
bounds (KL, max |dp|, the same top-1).

The served side is asked with the in-process side's prompt ids, so the model is compared on
the same input and the tokenizer separately (``/tokenize``, with and without special tokens)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from lm_probes.served.client import Endpoint
from lm_probes.snapshots import sections
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.differences import Difference, first_diff
from lm_probes.snapshots.record import FORMAT, dumps, write_atomically
from lm_probes.snapshots.sets import SERVED_CLASS  # the class the served side is compared as: always another one


def served_observations(endpoint: Endpoint, in_process: dict[str, Any]) -> dict[str, Any]:
    """What the server shows of the sections parity compares: each section the in-process
    side recorded whose entry says how a server shows it (``observe_served``, lm_probes/served/observe.py),
    in the section list's order, a plugin's section included."""
    return {
        section.name: section.observe_served(endpoint, in_process[section.name])
        for section in sections.all_sections()
        if section.observe_served is not None and section.name in in_process
    }


def parity_view(in_process: dict[str, Any], served: dict[str, Any]) -> dict[str, Any]:
    """The in-process observations as far as a server shows them: the sections it answered,
    and of the tokenizer only its ids (vocabulary size and chat are the model folder's)."""
    view = {name: in_process[name] for name in served if name in in_process}
    if "tokenizer" in view:
        view["tokenizer"] = {"ids": in_process["tokenizer"]["ids"]}
    return view


def served_provenance(endpoint: Endpoint, card: Any) -> dict[str, Any]:
    """What recorded the served side: the server (its /version where it has one), the
    model it serves and the card's engine arguments."""
    args = list(card.served.args)
    dtype = args[args.index("--dtype") + 1] if "--dtype" in args[:-1] else None
    return {
        "class": SERVED_CLASS,
        "device": SERVED_CLASS,
        # the dtype the card asks the engine for (the compute dtype of the cross-class rules)
        **({"dtype": dtype} if dtype else {}),
        "engine": f"{card.served.engine} {endpoint.version() or '(no /version)'}",
        "url": endpoint.url,
        "model": endpoint.model,
        "engine args": " ".join(card.served.args),
        "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_parity_snapshots(
    root: Path, card: str, in_process: tuple[dict, dict], served: tuple[dict, dict]
) -> tuple[Path, Path]:
    """The two sides as snapshot files, ``root/<card>/<class>.json`` and
    ``root/<card>/served.json`` ((provenance, observations) each), for ``lm-probes diff``:
    the in-process side as far as the server shows it (``parity_view``)."""
    folder = Path(root) / card
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for provenance, observed in (in_process, served):
        path = folder / f"{provenance['class']}.json"
        snapshot = {"format": FORMAT, "card": card, "provenance": provenance, "observed": observed}
        write_atomically(path, dumps(snapshot))  # as the snapshot writer: whole or not at all
        paths.append(path)
    return paths[0], paths[1]


def parity_differences(
    in_process: dict[str, Any], served: dict[str, Any], bounds: dict[str, float], provenance: dict[str, Any]
) -> list[Difference]:
    """The served observations against the in-process ones, section by section, under the
    cross-class rules with ``bounds`` (a card's ``served.parity``: prob_atol, kl_max)."""
    return compare(
        parity_view(in_process, served),
        served,
        tolerances={"cross_class": dict(bounds)},
        recorded_provenance=provenance,
        current_provenance=provenance,
        classes=("transformers", SERVED_CLASS),
    )


def repeat_differences(endpoint: Endpoint, recorded: dict[str, Any], repeats: int, concurrent: int) -> list[Difference]:
    """Greedy must not depend on when or beside what it is asked (vLLM #4112, #11778): each
    recorded run (BOS on, off) asked ``repeats`` times one after another, then ``concurrent``
    times at once, gives the ids of its first answer every time."""
    from concurrent.futures import ThreadPoolExecutor

    out: list[Difference] = []
    for label, run in recorded.items():

        def ask(_: int = 0, run: dict[str, Any] = run) -> tuple[int, ...]:
            (g,) = endpoint.complete(run["prompt_ids"], max_tokens=len(run["ids"]), temperature=0.0, logprobs=0)
            return g.ids

        first = ask()
        again = [ask() for _ in range(repeats - 1)]
        with ThreadPoolExecutor(max_workers=concurrent) as pool:
            together = list(pool.map(ask, range(concurrent)))
        for kind, answers, how in (
            ("determinism", again, f"{repeats} requests one after another"),
            ("concurrency", together, f"{concurrent} requests at once"),
        ):
            differing = [i for i, ids in enumerate(answers) if ids != first]
            if differing:
                ids = answers[differing[0]]
                step = first_diff(list(first), list(ids))
                out.append(
                    Difference(
                        "error",
                        f"served.{kind}.{label}",
                        f"{len(differing)} of {len(answers)} answers to {how} differ from the first, from new token "
                        f"{step}: {list(first[step : step + 3])} -> {list(ids[step : step + 3])}",
                    )
                )
    return out


def greedy_alignment(in_process: dict[str, Any], served: dict[str, Any], decode: Any) -> list[list[str]]:
    """Per greedy run, the text both sides share, then each side's from where they part
    (the report's aligned texts): [label, shared, transformers' rest, served rest]."""
    rows = []
    for label, run in in_process.items():
        ours, theirs = list(run["ids"]), list(served[label]["ids"])
        step = first_diff(ours, theirs)
        rest = (decode(ours[step:]), decode(theirs[step:])) if ours != theirs else ("(the same)", "(the same)")
        rows.append(
            [f"{label}: {'parts at new token ' + str(step) if ours != theirs else 'equal'}", decode(ours[:step]), *rest]
        )
    return rows
