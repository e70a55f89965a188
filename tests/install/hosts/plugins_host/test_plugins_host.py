"""A host project's tests using the plugins ML projects commonly have."""

import pytest
from hostlib import answer, tokens
from hypothesis import given
from hypothesis import strategies as st


def test_tokens_match_the_snapshot(snapshot):  # syrupy's fixture
    assert tokens("The capital of Japan is Tokyo") == snapshot


@pytest.mark.asyncio
async def test_answer():
    assert await answer("capital of Japan") == "Tokyo"


@given(st.text(alphabet="ab ", max_size=20))
def test_tokens_never_hold_spaces(text):
    assert all(" " not in t for t in tokens(text))


def test_tokens_speed(benchmark):  # pytest-benchmark's fixture
    assert benchmark(tokens, "a b c") == ["a", "b", "c"]
