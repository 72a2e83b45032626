"""The search memory: products chosen for past searches vote for the searches nearest to them."""

import numpy as np
import pytest

from shopguide.ml.memory import SearchMemory
from shopguide.ml.ranker import FEATURES, FeatureBuilder

# Three past searches as unit vectors along three axes.
PAST = {
    "metal drill bits": {"bits": 2.0, "drill": 1.0},
    "garden hose": {"hose": 2.0, "reel": 0.0},
    "led bulb": {"bulb": 2.0},
}
POSITIONS = {"drill": 0, "bits": 1, "hose": 2, "reel": 3, "bulb": 4}


@pytest.fixture
def memory():
    return SearchMemory.build(np.eye(3, 4, dtype=np.float32), PAST, top_grade=2.0, neighbours=2)


def unit(*values):
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_the_nearest_searches_vote_by_closeness_and_grade(memory):
    query = unit(0.8, 0.6, 0.0, 0.0)  # mostly the drill-bit search, partly the hose one
    votes, _, nearest = memory.votes("drill bit set", query, POSITIONS, 5)

    assert nearest == pytest.approx(0.8)
    assert votes.tolist() == pytest.approx([0.8 * 0.5, 0.8 * 1.0, 0.6 * 1.0, 0.0, 0.0])  # grade 0 chooses nothing
    # Only the two nearest searches vote: the bulb search is the third.
    assert votes[POSITIONS["bulb"]] == 0.0


def test_a_search_never_votes_for_itself(memory):
    # While training, by its row, even where its vector is not the stored one ...
    own, _, nearest = memory.votes("metal drill bits", unit(0.9, 0.1, 0.0, 0.0), POSITIONS, 5)
    assert own[POSITIONS["bits"]] == 0.0 and own[POSITIONS["hose"]] > 0 and nearest == pytest.approx(0.11, abs=0.01)
    # ... and when served (no rows), by its vector.
    memory.rows = {}
    served, _, nearest = memory.votes("metal drill bits", unit(1.0, 0.0, 0.0, 0.0), POSITIONS, 5)
    assert served[POSITIONS["bits"]] == 0.0 and nearest == 0.0
    close, _, nearest = memory.votes("metal drill bit", unit(0.99, 0.14, 0.0, 0.0), POSITIONS, 5)
    assert close[POSITIONS["bits"]] == pytest.approx(0.99, abs=0.01) and nearest == pytest.approx(0.99, abs=0.01)


def test_products_gone_from_the_catalogue_are_skipped(memory):
    votes, _, _ = memory.votes("bits", unit(0.8, 0.6, 0.0, 0.0), {"bits": 0}, 1)  # "drill" and "hose" are gone
    assert votes.tolist() == pytest.approx([0.8])


def test_a_stored_memory_votes_as_it_did(memory, tmp_path):
    assert SearchMemory.load(tmp_path / "memory.npz") is None  # a version trained without one
    memory.save(tmp_path / "memory.npz")
    loaded = SearchMemory.load(tmp_path / "memory.npz")
    query = unit(0.3, 0.5, 0.8, 0.1)
    assert loaded.rows == {} and loaded.choices == memory.choices
    np.testing.assert_allclose(loaded.votes("q", query, POSITIONS, 5)[0], memory.votes("q", query, POSITIONS, 5)[0])


def test_remembered_products_become_candidates_no_retriever_found(memory):
    texts = ["cordless drill", "titanium bit kit", "garden hose", "hose reel", "led bulb"]
    builder = FeatureBuilder(texts)
    nothing = np.zeros(5, dtype=np.float32)
    cosine = np.full(5, -1.0, dtype=np.float32)  # not searched
    query = unit(0.8, 0.6, 0.0, 0.0)
    without = builder.candidates("metal bits", cosine, nothing, nothing, nothing)
    with_memory = builder.candidates(
        "metal bits", cosine, nothing, nothing, nothing, memory=memory.votes("metal bits", query, POSITIONS, 5)
    )

    assert without.indices.tolist() == []
    assert with_memory.indices.tolist() == [1, 2, 0]  # most votes first
    rows = [dict(zip(FEATURES, row)) for row in with_memory.features]
    assert [row["memory"] for row in rows] == pytest.approx([0.8, 0.6, 0.4])
    assert [row["memory_share"] for row in rows] == pytest.approx([1.0, 0.75, 0.5])
    assert rows[0]["nearest_search"] == pytest.approx(0.8)
