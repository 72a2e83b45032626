"""The query encoder web processes run: exported to ONNX at the end of training, kept only where
its vectors match torch's, and run by onnxruntime with the tokenizers library."""

import numpy as np
import pytest

from shopguide.ml import version_files
from shopguide.ml.encoder import Encoder
from shopguide.ml.onnx_encoder import PRODUCT_MAX_LENGTH, QUERY_MAX_LENGTH, OnnxEncoder
from tests.slang_shop import PRODUCTS

TEXTS = [
    "cordless drill",
    "Teal VELVET loveseat for the den",
    "1/2 in. x 10 ft. PVC pipe, schedule 40",
    "café crème ½ size – pâtisserie",
    "x",
    "",
    " ".join(["reciprocating saw blade"] * 20),  # longer than either limit
    *PRODUCTS.values(),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The base encoder saved as a version's encoder folder would be, with its ONNX export."""
    folder = tmp_path_factory.mktemp("version")
    encoder = Encoder(precision="float32")
    encoder.save(folder / version_files.ENCODER_FOLDER)
    report, served = version_files.export_query_encoder(folder, encoder, TEXTS)
    assert isinstance(served, OnnxEncoder)
    return folder, encoder, report


def test_the_tokenizer_gives_transformers_own_tokens(exported):
    folder, encoder, _ = exported
    onnx = OnnxEncoder(folder / version_files.ONNX_FILE, folder / version_files.ENCODER_FOLDER)
    for limit in (QUERY_MAX_LENGTH, PRODUCT_MAX_LENGTH):
        mine = [encoding.ids for encoding in onnx.tokenizer(limit).encode_batch(TEXTS)]
        theirs = encoder.tokenizer(TEXTS, truncation=True, max_length=limit)["input_ids"]
        assert mine == theirs


def test_the_export_is_kept_and_its_vectors_match_torch(exported):
    folder, encoder, report = exported
    assert report["served"] is True and report["checked"] == len(TEXTS)
    assert report["min_cosine"] >= version_files.ONNX_MIN_COSINE
    onnx = version_files.load_query_encoder(folder, threads=1)
    assert isinstance(onnx, OnnxEncoder) and onnx.dimensions == encoder.dimensions
    # Batches of mixed lengths, one text at a time, queries and product texts alike.
    for kwargs in ({}, {"batch_size": 1}, {"max_length": QUERY_MAX_LENGTH}):
        mine, theirs = onnx.encode(TEXTS, **kwargs), encoder.encode(TEXTS, **kwargs)
        assert mine.dtype == np.float32 and mine.shape == theirs.shape
        assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
        assert np.sum(mine * theirs, axis=1).min() >= version_files.ONNX_MIN_COSINE


def test_the_word_embeddings_are_stored_in_float16(exported):
    import onnx

    folder, encoder, _ = exported
    graph = onnx.load(str(folder / version_files.ONNX_FILE)).graph
    halves = [tensor for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT16]
    assert [tuple(tensor.dims) for tensor in halves] == [tuple(encoder.model.embeddings.word_embeddings.weight.shape)]
    assert any(node.op_type == "Cast" for node in graph.node)


def test_a_version_without_the_file_serves_through_torch(exported, tmp_path):
    folder, _, _ = exported
    older = tmp_path / "older"
    (older / version_files.ENCODER_FOLDER).mkdir(parents=True)
    for path in (folder / version_files.ENCODER_FOLDER).iterdir():
        (older / version_files.ENCODER_FOLDER / path.name).write_bytes(path.read_bytes())
    assert isinstance(version_files.load_query_encoder(older), Encoder)


class Drifting:
    """A torch encoder whose vectors the export cannot reproduce (as a wrong exporter's were)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def export_onnx(self, path):
        self.encoder.export_onnx(path)

    def encode_queries(self, texts):
        vectors = self.encoder.encode_queries(texts)
        vectors[:, :40] = 0  # a cosine of ~0.9 to the true vectors
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class Failing:
    def export_onnx(self, path):
        path.write_bytes(b"half a file")
        raise RuntimeError("the exporter does not know this operator")


def test_an_export_that_does_not_match_is_not_kept(exported, tmp_path):
    _, encoder, _ = exported
    encoder.save(tmp_path / version_files.ENCODER_FOLDER)
    report, served = version_files.export_query_encoder(tmp_path, Drifting(encoder), TEXTS)
    assert report["served"] is False and served is None and report["min_cosine"] < version_files.ONNX_MIN_COSINE
    assert not (tmp_path / version_files.ONNX_FILE).exists()
    assert isinstance(version_files.load_query_encoder(tmp_path), Encoder)


def test_a_failed_export_is_reported_and_leaves_no_file(tmp_path):
    report, served = version_files.export_query_encoder(tmp_path, Failing(), TEXTS)
    assert (
        report["served"] is False and served is None and "RuntimeError: the exporter does not know" in report["error"]
    )
    assert not (tmp_path / version_files.ONNX_FILE).exists()
