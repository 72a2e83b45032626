"""bfloat16 matrix products: chosen where the CPU is fast at them, and the same vectors."""

import numpy as np
import pytest

from shopguide.ml import precision
from shopguide.ml.encoder import Encoder
from shopguide.ml.reranker import CrossEncoder
from tests.slang_shop import PRODUCTS


def test_auto_follows_the_cpu_and_explicit_choices_win(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert precision.use_bfloat16("auto") is True
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.use_bfloat16("auto") is False
    assert precision.use_bfloat16("bfloat16") is True
    assert precision.use_bfloat16("float32") is False


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="'half'.*auto, bfloat16, float32"):
        Encoder(precision="half")


def test_bfloat16_vectors_match_float32_ones():
    texts = list(PRODUCTS.values())
    exact = Encoder(precision="float32").encode(texts)
    fast = Encoder(precision="bfloat16").encode(texts)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
    assert (fast * exact).sum(axis=1).min() > 0.999
    # The products' order for a query is what serving uses: the same top 3.
    query_exact = Encoder(precision="float32").encode_queries(["cordless drill"])[0]
    assert list(np.argsort(-(fast @ query_exact))[:3]) == list(np.argsort(-(exact @ query_exact))[:3])


def test_the_cross_encoder_scores_in_bfloat16_too():
    texts = list(PRODUCTS.values())[:6]
    reranker = CrossEncoder(Encoder().path, precision="float32")  # one instance: one random head
    exact = reranker.score("drill", texts)
    reranker.bfloat16 = True
    fast = reranker.score("drill", texts)
    assert fast.dtype == np.float32
    assert np.corrcoef(exact, fast)[0, 1] > 0.99
