"""The embedding part of a drafted card: which word groups stand apart, with bounds set against
random embeddings (NOISE_DRAWS) so that chance passes them at most NOISE_RATE of the time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from probes import embedding as em
from probes.draft.margins import _noise_bound, ceil_to
from probes.draft.settings import NOISE_DRAWS, UNRELATED, Draft
from probes.draft.writer import Commented
from probes.subjects import results as ob

if TYPE_CHECKING:
    from probes.subjects.subject import Subject


def draft_embedding(subject: Subject, draft: Draft) -> dict[str, Any]:
    """E2-E5. The margin every coherent group must reach is set against random
    embeddings with this tokenizer's sub-word ids (NOISE_DRAWS draws, seeded): the
    smallest bound, in steps of 0.01, that noise passes for all the claimed groups
    together in at most NOISE_RATE of draws. A group of the article's semantic groups
    below it is a strict xfail: it is not told apart from noise."""
    vectors = ob.word_vectors(subject)
    cosine = ob.cosine(subject)
    measured = {g: c.margin for g, c in em.group_coherence(cosine, vectors.groups).items()}
    semantic = [g for g in measured if g != UNRELATED]
    hidden = subject.model.get_input_embeddings().weight.shape[1]
    noise = [
        {g: c.margin for g, c in em.group_coherence(em.cosine_matrix(v), vectors.groups).items()}
        for v in (em.noise_word_vectors(vectors.sub_ids, hidden, seed) for seed in range(NOISE_DRAWS))
    ]
    bound, rate = _noise_bound(measured, noise, semantic)
    section: dict[str, Any] = {
        "coherent_groups": Commented(
            semantic, "measured margins " + ", ".join(f"{g} {measured[g]:.3f}" for g in semantic)
        ),
    }
    if UNRELATED in measured:
        section["incoherent_groups"] = Commented([UNRELATED], f"measured margin {measured[UNRELATED]:.3f}")
    section["min_margin"] = Commented(
        bound,
        f"random embeddings ({NOISE_DRAWS} seeded draws, hidden {hidden}) pass it for the groups above it "
        f"together in {rate:.1%} of draws",
    )
    for g in semantic:
        if measured[g] < bound:
            share = np.mean([n[g] >= measured[g] for n in noise])
            draft.fails(
                "test_semantic_group_is_closer_inside_than_outside",
                f"margin {measured[g]:.3f} (intra - inter cosine) is below {bound}; a random embedding "
                f"reaches {measured[g]:.3f} for this group in {share:.0%} of draws (measured by lm-probes draft-card)",
                case=g,
            )
    if UNRELATED in measured and measured[UNRELATED] >= bound:
        draft.fails(
            "test_unrelated_group_is_not_coherent",
            f"margin {measured[UNRELATED]:.3f} reaches {bound} (measured by lm-probes draft-card)",
            case=UNRELATED,
        )

    words = {w: i for i, w in enumerate(vectors.words)}
    if all(w in words for w in ("dog", "cat", "fish", "cow")):
        inside = float(cosine[words["dog"], words["cat"]])
        outside = max(float(cosine[words[p], words[o]]) for p in ("dog", "cat") for o in ("fish", "cow"))
        section["apart"] = [
            Commented(
                {"id": "dog-cat-vs-fish-cow", "pair": ["dog", "cat"], "outsiders": ["fish", "cow"]},
                f"cos(dog, cat) {inside:.3f}, closest outsider pair {outside:.3f}",
            )
        ]
        if inside <= outside:
            draft.fails(
                "test_pairs_sit_apart_from_outsiders",
                f"cos(dog, cat) {inside:.3f} <= {outside:.3f} (measured by lm-probes draft-card)",
                case="dog-cat-vs-fish-cow",
            )

    projection = ob.projection(subject)
    section["pca_explained_at_most"] = Commented(
        min(0.95, ceil_to(projection.explained + 0.05, 0.05)),
        f"measured {projection.explained:.3f}, +0.05 rounded up; a collapsed embedding gives ~1",
    )
    distances = em.centroid_distances(projection.coords, vectors.groups)
    nearer = []
    for g in semantic:
        others = sorted((d, b) for (a, b), d in distances.items() if a == g)
        (near, near_group), (far, far_group) = others[0], others[-1]
        if near < 0.8 * far:  # only a clear ordering: PCA of 20 points moves with rounding
            nearer.append(
                Commented(
                    {"id": g, "group": g, "nearer": near_group, "than": far_group},
                    f"centroid distances {near:.3f} and {far:.3f}",
                )
            )
    if nearer:
        section["pca_nearer"] = nearer
    return section
