"""SPEC E2-E5: word vectors from the input embedding, cosine similarity and PCA."""

from __future__ import annotations

import pytest

from lm_probes import embedding as em
from lm_probes.expect import check_at_most, check_that
from lm_probes.report import plots
from lm_probes.subjects.results import cosine, projection, word_vectors


def coherence(lm_probes_subject) -> dict[str, em.GroupCoherence]:
    return em.group_coherence(cosine(lm_probes_subject), word_vectors(lm_probes_subject).groups)


@pytest.mark.observation("E2", "E3", expects="embedding")
def test_word_vectors_come_from_sub_word_rows_without_bos(lm_probes_model_subject, lm_probes_attach):
    """E2/E3 on the model: each of the 20 words encodes (special tokens off) to sub-word
    ids with no BOS among them, every id a row of the embedding, and no two words that
    encode differently share a vector. (That a vector is the mean of its rows is a unit
    test of the probe, tests/unit/probe/test_embedding_probe.py.)"""
    vectors = word_vectors(lm_probes_model_subject)
    lm_probes_attach.png(
        plots.cosine_heatmap(
            cosine(lm_probes_model_subject),
            vectors.words,
            f"{lm_probes_model_subject.name}: cosine similarity of 20 words",
        ),
        name="cosine heatmap",
    )
    card = lm_probes_model_subject.card
    rows = lm_probes_model_subject.model.get_input_embeddings().weight.shape[0]
    for word, ids in zip(vectors.words, vectors.sub_ids):
        check_that(
            card,
            lm_probes_model_subject.tokenizer.bos_token_id not in ids,
            expected="words are encoded without BOS (special tokens off)",
            obtained=f"{word!r} was encoded with BOS: {ids}",
        )
        check_that(
            card,
            all(0 <= i < rows for i in ids),
            expected=f"every id is a row of the {rows}-row embedding",
            obtained=f"{word!r} has ids outside it: {ids}",
        )
    seen: dict[bytes, str] = {}
    for word, ids, row in zip(vectors.words, vectors.sub_ids, vectors.vectors):
        other = seen.setdefault(row.tobytes(), word)
        check_that(
            card,
            other == word or vectors.sub_ids[vectors.words.index(other)] == ids,
            expected="words that encode differently have different vectors",
            obtained=f"{word!r} and {other!r} encode differently but have the same vector (duplicated rows)",
        )


@pytest.mark.observation("E4", expects="embedding.coherent_groups")
def test_semantic_group_is_closer_inside_than_outside(lm_probes_model_subject, case, lm_probes_attach):
    """One item per group the card calls coherent: mean intra-group cosine minus mean
    cosine to the other words >= the card's min_margin. (How often a random embedding
    passes each group's bound is in docs/reliability.md, "What the suite is known to catch".)"""
    card = lm_probes_model_subject.card
    stats = coherence(lm_probes_model_subject)
    lm_probes_attach.text(
        "\n".join(f"{g}: intra {c.intra:.4f}  inter {c.inter:.4f}  margin {c.margin:+.4f}" for g, c in stats.items())
    )
    margin = card.expected("embedding.min_margin")
    group = stats[case]
    check_that(
        card,
        group.margin >= margin,
        field="embedding.coherent_groups",
        expected=f"{case}: intra - inter >= {margin}",
        obtained=round(group.margin, 4),
        note=f"intra {group.intra:.4f}, inter {group.inter:.4f}",
    )


@pytest.mark.observation("E4", expects="embedding.incoherent_groups")
def test_unrelated_group_is_not_coherent(lm_probes_model_subject, case):
    card = lm_probes_model_subject.card
    group = coherence(lm_probes_model_subject)[case]
    margin = card.expected("embedding.min_margin")
    check_that(
        card,
        group.margin < margin,
        field="embedding.incoherent_groups",
        expected=f"{case}: intra - inter < {margin}",
        obtained=round(group.margin, 4),
    )


@pytest.mark.observation("E4", expects="embedding.apart")
def test_pairs_sit_apart_from_outsiders(lm_probes_model_subject, case):
    """E4: e.g. dog and cat are closer to each other than either is to fish or cow."""
    vectors = word_vectors(lm_probes_model_subject)
    index = {w: i for i, w in enumerate(vectors.words)}
    sims = cosine(lm_probes_model_subject)
    a, b = case["pair"]
    inside = sims[index[a], index[b]]
    closest_outside = max((sims[index[p], index[o]], p, o) for p in (a, b) for o in case["outsiders"])
    check_that(
        lm_probes_model_subject.card,
        inside > closest_outside[0],
        field=f"embedding.apart[{case['id']}]",
        expected=f"cos({a}, {b}) above every pair with {case['outsiders']}",
        obtained=f"cos({a}, {b}) = {inside:.4f} <= cos({closest_outside[1]}, {closest_outside[2]}) = "
        f"{closest_outside[0]:.4f}",
    )


@pytest.mark.observation("E5", expects="embedding.pca_explained_at_most")
def test_two_components_explain_little_variance(lm_probes_model_subject, lm_probes_attach):
    card = lm_probes_model_subject.card
    vectors = word_vectors(lm_probes_model_subject)
    proj = projection(lm_probes_model_subject)
    lm_probes_attach.png(
        plots.pca_scatter(proj, vectors.words, vectors.groups, f"{card.name}: 20 words"), name="PCA scatter"
    )
    check_at_most(
        card,
        "embedding.pca_explained_at_most",
        round(proj.explained, 4),
        note=f"explained variance ratios {proj.explained_variance_ratio}",
    )


@pytest.mark.observation("E5", expects="embedding.pca_nearer")
def test_projection_places_groups(lm_probes_model_subject, case):
    """E5: in two dimensions a group can sit nearer an unrelated group than a related one."""
    vectors = word_vectors(lm_probes_model_subject)
    distances = em.centroid_distances(projection(lm_probes_model_subject).coords, vectors.groups)
    near = distances[(case["group"], case["nearer"])]
    far = distances[(case["group"], case["than"])]
    check_that(
        lm_probes_model_subject.card,
        near < far,
        field=f"embedding.pca_nearer[{case['id']}]",
        expected=f"{case['group']} nearer {case['nearer']} than {case['than']}",
        obtained=f"distance to {case['nearer']} {near:.4f}, to {case['than']} {far:.4f}",
    )
