"""A trained version's folder: its layout, how each part is written and read, its checksum.

::

    encoder/               the fine-tuned query and product encoder (transformers format)
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
from pathlib import Path

import numpy as np

from .encoder import Encoder
from .memory import SearchMemory
from .ranker import LinearRanker
from .ranking import RERANK_DEPTH, VersionRanking
from .reranker import CrossEncoder

ENCODER_FOLDER = "encoder"
RERANKER_FOLDER = "reranker"
FUSION_FILE = "ranker.json"
MEMORY_FILE = "search_memory.npz"
VECTORS_FILE = "product_vectors.npy"
KEYS_FILE = "product_keys.json"
SUMMARY_FILE = "training.json"


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
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def load_encoder(folder, precision="auto"):
    return Encoder(Path(folder) / ENCODER_FOLDER, precision)


def load_fusion(folder):
    """The learned fusion stored with a version, or None when it has none."""
    path = Path(folder) / FUSION_FILE
    return LinearRanker.from_dict(json.loads(path.read_text())) if path.is_file() else None


def load_ranking(
    folder, catalogue, vectors, *, precision="auto", reranker_weight=0.0, rerank_depth=RERANK_DEPTH, encoder=None
):
    """The version in ``folder`` ranking ``catalogue`` with ``vectors`` (its encoder's vectors
    of the catalogue's products, or a vector search); its reranker only at a weight above 0.
    ``encoder``: one already loaded from this folder, to share."""
    folder = Path(folder)
    reranker = None
    if reranker_weight > 0 and (folder / RERANKER_FOLDER).is_dir():
        reranker = CrossEncoder(folder / RERANKER_FOLDER, precision)
    return VersionRanking(
        encoder or load_encoder(folder, precision),
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
