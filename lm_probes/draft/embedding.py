"""The embedding part of a drafted card: which word groups stand apart, with bounds set against
random embeddings (NOISE_DRAWS) so that chance passes them at most NOISE_RATE of the time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes import embedding as em
from lm_probes.draft.margins import PCA_EXPLAINED, noise_bound
from lm_probes.draft.settings import NOISE_DRAWS, UNRELATED, Draft
from lm_probes.draft.writer import Commented
from lm_probes.inputs import article_inputs
from lm_probes.subjects import results

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


def draft_embedding(subject: Subject, draft: Draft) -> dict[str, Any]:
    """E2-E5. The margin every coherent group must reach is set against random
    embeddings with this tokenizer's sub-word ids (NOISE_DRAWS draws, seeded): the
    smallest bound, in steps of 0.01, that noise passes for all the claimed groups
    together in at most NOISE_RATE of draws. A group of the article's semantic groups
    below it is a strict xfail: it is not told apart from noise."""
    vectors = results.word_vectors(subject)
    cosine = results.cosine(subject)
    measured = {g: c.margin for g, c in em.group_coherence(cosine, vectors.groups).items()}
    semantic = [g for g in measured if g != UNRELATED]
    hidden = subject.model.get_input_embeddings().weight.shape[1]
    noise = [
        {g: c.margin for g, c in em.group_coherence(em.cosine_matrix(v), vectors.groups).items()}
        for v in (em.noise_word_vectors(vectors.sub_ids, hidden, seed) for seed in range(NOISE_DRAWS))
    ]
    bound, rate = noise_bound(measured, noise, semantic)
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
    apart = article_inputs()["draft"]["apart"]  # a pair and two outsiders from the word groups
    (a, b), outsiders = apart["pair"], apart["outsiders"]
    if all(w in words for w in (a, b, *outsiders)):
        inside = float(cosine[words[a], words[b]])
        outside = max(float(cosine[words[p], words[o]]) for p in (a, b) for o in outsiders)
        section["apart"] = [
            Commented(
                {"id": apart["id"], "pair": [a, b], "outsiders": list(outsiders)},
                f"cos({a}, {b}) {inside:.3f}, closest outsider pair {outside:.3f}",
            )
        ]
        if inside <= outside:
            draft.fails(
                "test_pairs_sit_apart_from_outsiders",
                f"cos({a}, {b}) {inside:.3f} <= {outside:.3f} (measured by lm-probes draft-card)",
                case=apart["id"],
            )

    projection = results.projection(subject)
    section["pca_explained_at_most"] = Commented(
        PCA_EXPLAINED.bound(projection.explained),
        f"measured {projection.explained:.3f}; the bound is {PCA_EXPLAINED.describe()} "
        "(a collapsed embedding gives ~1)",
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
