"""A trained version's folder: its layout, how each part is written and read, its checksum.

::

    encoder/               the fine-tuned query and product encoder (transformers format)
    query_encoder.onnx     the same encoder for onnxruntime, what web processes serve with;
                           only where its vectors matched torch's (older versions lack it)
    reranker/              the cross-encoder, only when training kept one (blend weight > 0)
    ranker.json            the learned fusion, only when training kept one
    search_memory.npz      the search memory (vectors and product keys), only with a fusion
    product_vectors.npy    the catalogue's vectors as training encoded them ...
    product_keys.json      ... with their keys and texts (a rescore reuses unchanged ones)
    training.json          the recipe's settings, metrics, losses and timings

The checksum covers every file, so a version whose folder changed after training is refused.
"""

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from .memory import SearchMemory
from .precision import set_torch_threads
from .ranker import LinearRanker
from .ranking import RERANK_DEPTH, VersionRanking

logger = logging.getLogger(__name__)

ENCODER_FOLDER = "encoder"
RERANKER_FOLDER = "reranker"
FUSION_FILE = "ranker.json"
MEMORY_FILE = "search_memory.npz"
VECTORS_FILE = "product_vectors.npy"
KEYS_FILE = "product_keys.json"
SUMMARY_FILE = "training.json"
ONNX_FILE = "query_encoder.onnx"
# The ONNX encoder serves only if its vectors agree with torch's at least this well on every
# text it is checked on (float32 runs agree to ~0.99998; a wrong export scores ~0.93).
ONNX_MIN_COSINE = 0.9999


class VersionFilesError(Exception):
    """A version folder that is missing or whose files changed since training."""


def folder_checksum(folder):
    """SHA-256 over every file's relative path and content, in a stable order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def verify(folder, expected_checksum):
    """Raise ``VersionFilesError`` unless ``folder`` exists and matches its checksum."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VersionFilesError(f"The model folder {folder} is missing.")
    actual = folder_checksum(folder)
    if actual != expected_checksum:
        raise VersionFilesError(
            f"The model folder {folder} was changed after training "
            f"(checksum {actual[:12]}…, expected {expected_checksum[:12]}…); retrain or restore it."
        )


def texts_digest(keys, texts):
    """Fingerprint of a catalogue's keys and texts, to tell whether stored vectors still fit."""
    digest = hashlib.sha256()
    for key, text in zip(keys, texts):
        digest.update(f"{key}\0{text}\0".encode())
    return digest.hexdigest()


def save(folder, *, encoder, keys, texts, vectors, summary, fusion=None, memory=None, reranker=None):
    """Write a version's files (see the module docstring) into a new ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(folder / ENCODER_FOLDER)
    if reranker is not None:
        reranker.save(folder / RERANKER_FOLDER)
    if fusion is not None:
        (folder / FUSION_FILE).write_text(json.dumps(fusion.to_dict()))
    if memory is not None:
        memory.save(folder / MEMORY_FILE)
    np.save(folder / VECTORS_FILE, vectors)
    (folder / KEYS_FILE).write_text(
        json.dumps({"keys": list(keys), "texts": list(texts), "texts_sha256": texts_digest(keys, texts)})
    )
    save_summary(folder, summary)


def save_summary(folder, summary):
    (Path(folder) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def export_query_encoder(folder, encoder, texts):
    """Export ``encoder`` (a torch ``Encoder``) to ``folder``/query_encoder.onnx and check it on
    ``texts`` (held-out queries where there are any): the file stays only if every vector's
    cosine to torch's is at least ``ONNX_MIN_COSINE``. Returns ``(report, exported)``: what the
    version's report keeps (``served``: whether it stays, ``min_cosine``, ``checked``: texts,
    ``seconds``, and the ``error`` when the export failed: the version then serves through
    torch), and the checked ``OnnxEncoder`` (None where it does not serve)."""
    from .onnx_encoder import OnnxEncoder

    path = Path(folder) / ONNX_FILE
    texts = list(texts) or ["a"]
    started = time.monotonic()
    try:
        encoder.export_onnx(path)
        exported = OnnxEncoder(path, Path(folder) / ENCODER_FOLDER, threads=1)
        cosines = np.sum(exported.encode_queries(texts) * encoder.encode_queries(texts), axis=1)
    except Exception as exc:  # an exporter that cannot handle this model: serve through torch
        logger.warning("The query encoder could not be exported to ONNX: %s", exc, exc_info=True)
        path.unlink(missing_ok=True)
        return {"served": False, "error": f"{type(exc).__name__}: {exc}", "checked": len(texts)}, None
    min_cosine = float(cosines.min())
    served = min_cosine >= ONNX_MIN_COSINE
    if not served:
        path.unlink()
    report = {
        "served": served,
        "min_cosine": round(min_cosine, 6),
        "checked": len(texts),
        "seconds": round(time.monotonic() - started, 2),
    }
    return report, exported if served else None


def load_encoder(folder, precision="auto"):
    """The version's torch encoder (training, and serving where it has no ONNX file)."""
    from .encoder import Encoder

    return Encoder(Path(folder) / ENCODER_FOLDER, precision)


def load_query_encoder(folder, precision="auto", threads=None, onnx=True):
    """What serving encodes queries with: the ONNX encoder where the version has one (no
    torch imported) and ``onnx`` allows it, its torch encoder otherwise. ``threads``: the
    encoder's threads."""
    folder = Path(folder)
    if onnx and (folder / ONNX_FILE).is_file():
        from .onnx_encoder import OnnxEncoder

        return OnnxEncoder(folder / ONNX_FILE, folder / ENCODER_FOLDER, threads)
    set_torch_threads(threads)
    return load_encoder(folder, precision)


def load_fusion(folder):
    """The learned fusion stored with a version, or None when it has none."""
    path = Path(folder) / FUSION_FILE
    return LinearRanker.from_dict(json.loads(path.read_text())) if path.is_file() else None


def load_ranking(
    folder,
    catalogue,
    vectors,
    *,
    precision="auto",
    reranker_weight=0.0,
    rerank_depth=RERANK_DEPTH,
    encoder=None,
    threads=None,
    onnx=True,
):
    """The version in ``folder`` ranking ``catalogue`` with ``vectors`` (its encoder's vectors
    of the catalogue's products, or a vector search); its reranker only at a weight above 0
    (a cross-encoder runs on torch). ``encoder``: one already loaded from this folder, to
    share; otherwise ``load_query_encoder``'s, with ``threads`` and ``onnx``."""
    folder = Path(folder)
    reranker = None
    if reranker_weight > 0 and (folder / RERANKER_FOLDER).is_dir():
        from .reranker import CrossEncoder

        reranker = CrossEncoder(folder / RERANKER_FOLDER, precision)
    return VersionRanking(
        encoder or load_query_encoder(folder, precision, threads, onnx),
        catalogue,
        vectors,
        load_fusion(folder),
        SearchMemory.load(folder / MEMORY_FILE),
        reranker,
        reranker_weight,
        rerank_depth,
    )


def load_product_vectors(folder, keys, texts):
    """The vectors a training run stored, if they were computed for exactly these texts."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / KEYS_FILE).read_text())
    except FileNotFoundError:
        return None
    if stored.get("texts_sha256") != texts_digest(keys, texts):
        return None
    return np.load(folder / VECTORS_FILE)


def stored_vectors_by_key(folder):
    """``{key: (text, vector)}`` of the vectors the training run stored ({} without them)."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / KEYS_FILE).read_text())
        vectors = np.load(folder / VECTORS_FILE, mmap_mode="r")
    except FileNotFoundError:
        return {}
    texts = stored.get("texts") or []
    return {key: (text, vectors[row]) for row, (key, text) in enumerate(zip(stored["keys"], texts))}
