"""Embedding maths on hand-checkable vectors."""

from __future__ import annotations

import numpy as np
import pytest

from lm_probes import embedding as em


def test_cosine_matrix_of_known_vectors():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    cos = em.cosine_matrix(v)
    # orthogonal -> 0; 45 degrees -> 1/sqrt(2); a vector with itself -> 1
    assert cos[0, 1] == pytest.approx(0.0)
    assert cos[0, 2] == pytest.approx(1 / np.sqrt(2))
    np.testing.assert_allclose(np.diag(cos), 1.0)


def test_cosine_of_a_zero_vector_is_an_error():
    with pytest.raises(ValueError, match="all zeros"):
        em.cosine_matrix(np.array([[0.0, 0.0], [1.0, 0.0]]))


def test_group_coherence_means():
    # two tight groups far apart: a = {0, 1}, b = {2, 3}
    cos = np.array(
        [
            [1.0, 0.9, 0.1, 0.2],
            [0.9, 1.0, 0.3, 0.0],
            [0.1, 0.3, 1.0, 0.5],
            [0.2, 0.0, 0.5, 1.0],
        ]
    )
    stats = em.group_coherence(cos, ("a", "a", "b", "b"))
    assert stats["a"].intra == pytest.approx(0.9)  # the diagonal is left out
    assert stats["a"].inter == pytest.approx((0.1 + 0.2 + 0.3 + 0.0) / 4)
    assert stats["b"].margin == pytest.approx(0.5 - 0.15)


@pytest.mark.parametrize("labels", [("a", "b", "b"), ("a", "a", "a")], ids=["one-word group", "no word outside"])
def test_group_coherence_refuses_a_group_it_cannot_average(labels):
    """Issue 12, bug 4: a one-word group has no pair inside (0/0) and a group of every
    word has no outsider (mean of nothing): NaN margins, which no bound can judge."""
    cos = np.eye(3)
    with pytest.raises(ValueError, match="a group needs at least 2 words and words outside it"):
        em.group_coherence(cos, labels)


def test_pca_explains_a_line_fully():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]])
    proj = em.pca_2d(points)
    assert proj.explained_variance_ratio[0] == pytest.approx(1.0)
    assert proj.coords.shape == (4, 2)


def test_pca_ratios_are_the_covariances_top_eigenvalues_and_axes_keep_one_orientation():
    """Exact PCA at a SmolLM2-sized width (576 > 500, where scikit-learn's randomized SVD
    was an approximation): the ratios are the covariance's two largest eigenvalues over
    its trace, and negating every vector mirrors the points, not the axes."""
    vectors = np.random.default_rng(0).standard_normal((20, 576)) @ np.diag(np.linspace(3, 1, 576))
    proj = em.pca_2d(vectors)
    eigenvalues = np.linalg.eigvalsh(np.cov(vectors, rowvar=False))[::-1]
    assert proj.explained_variance_ratio == pytest.approx(tuple(eigenvalues[:2] / eigenvalues.sum()), rel=1e-9)
    np.testing.assert_allclose(em.pca_2d(-vectors).coords, -proj.coords, atol=1e-9)


def test_centroid_distances():
    coords = np.array([[0.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    d = em.centroid_distances(coords, ("a", "a", "b"))
    assert d[("a", "b")] == pytest.approx(3.0) and d[("b", "a")] == d[("a", "b")]


def test_word_vectors_are_the_mean_of_sub_word_rows():
    """E2, moved here from the behavioural suite: a property of the probe, not of a model."""
    import torch

    from lm_probes.cards.card import find_card
    from lm_probes.subjects.subject import Subject

    subject = Subject(find_card("tiny-mistral"))
    groups = {"a": ["king", "princess"], "b": ["basketball", "idea"]}
    vectors = em.word_vectors(subject.tokenizer, subject.model, groups)
    weight = subject.model.get_input_embeddings().weight
    assert vectors.vectors.shape == (4, weight.shape[1])
    for word, ids, row in zip(vectors.words, vectors.sub_ids, vectors.vectors):
        assert list(ids) == subject.tokenizer.encode(word, add_special_tokens=False)
        with torch.no_grad():
            expected = weight[list(ids)].float().mean(dim=0).numpy()
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6, err_msg=word)


def test_smollm2_embedding_bounds_reject_a_random_embedding():
    """Issue 10, hole 7: a card's E4 bounds must fail on noise. 200 random embeddings of
    SmolLM2's size with its sub-word ids (seeded): the groups the card holds coherent
    (its xfails left out) pass together in at most 1% of draws; per group: people and
    animals ~0.3%, royalty and sports ~85% (they share sub-word rows), README.
    The dog-cat pair beats its four outsider pairs by chance 1 time in 5: that bound is weak
    by nature, and stated so."""
    from lm_probes.cards.card import find_card
    from lm_probes.inputs import article_inputs
    from lm_probes.subjects.subject import Subject

    card = find_card("smollm2-135m-instruct")
    tokenizer = Subject(card).tokenizer
    groups = article_inputs()["word_groups"]
    words = [w for ws in groups.values() for w in ws]
    labels = tuple(g for g, ws in groups.items() for _ in ws)
    sub_ids = tuple(tuple(tokenizer.encode(w, add_special_tokens=False)) for w in words)
    margin = card.expected("embedding.min_margin")
    claimed = [
        g
        for g in card.expected("embedding.coherent_groups")
        if not card.xfail_reason("test_semantic_group_is_closer_inside_than_outside", g)
    ]
    dog, cat, fish, cow = (words.index(w) for w in ("dog", "cat", "fish", "cow"))
    joint = apart = 0
    draws = 200
    for seed in range(draws):
        cos = em.cosine_matrix(em.noise_word_vectors(sub_ids, 576, seed))
        stats = em.group_coherence(cos, labels)
        joint += all(stats[g].margin >= margin for g in claimed)
        apart += cos[dog, cat] > max(cos[p, o] for p in (dog, cat) for o in (fish, cow))
    assert joint / draws <= 0.01, f"noise passes the card's groups {claimed} in {joint} of {draws} draws"
    assert apart / draws <= 0.3, f"noise passes dog-cat-vs-fish-cow in {apart} of {draws} draws"
