"""Trained versions: which one serves, and a version's ranking over a catalogue (what the
evaluation command and the activation gate rank with). Where their files live:
``version_storage``."""

import numpy as np
from django.db import transaction
from django.utils import timezone

from .models import ProductVector, RecommenderModel, ServingState
from .signals import model_activated


class ActivationError(Exception):
    """A version that cannot serve; the active version is left as it was."""


def active_model():
    return RecommenderModel.objects.filter(is_active=True).first()


def activate(model):
    """Make ``model`` the one active version after checking its files are intact. Serving
    follows at once, so call it where its vectors are in (a rescore's swap does)."""
    from .ml.version_files import VersionFilesError, verify

    if model.status != RecommenderModel.Status.READY:
        raise ActivationError(f"Version {model.version} is {model.status}, not ready; it cannot serve.")
    try:
        verify(model.folder, model.checksum)
    except VersionFilesError as exc:
        raise ActivationError(f"Version {model.version} cannot be activated: {exc}") from exc
    with transaction.atomic():
        RecommenderModel.objects.select_for_update().filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
        model.is_active, model.activated_at = True, timezone.now()
        model.save(update_fields=["is_active", "activated_at"])
        ServingState.bump(epoch=True)
        transaction.on_commit(lambda: model_activated.send(sender=RecommenderModel, model=model))
    return model


def previous_model():
    """The version that was active before the current one, or None."""
    current = active_model()
    return (
        RecommenderModel.objects.filter(status=RecommenderModel.Status.READY, activated_at__isnull=False)
        .exclude(pk=getattr(current, "pk", None))
        .order_by("-activated_at")
        .first()
    )


def version_vectors(model, keys, texts, encoder, progress=None):
    """``model``'s vectors of the products ``keys`` with ``texts``: those its training run
    stored, then its serving rows, for products whose text is unchanged; the rest encoded."""
    from .ml.version_files import load_product_vectors, stored_vectors_by_key

    vectors = load_product_vectors(model.folder, keys, texts)
    if vectors is not None:
        return vectors
    known = stored_vectors_by_key(model.folder)
    rows = ProductVector.objects.filter(model=model).values_list("product_key", "text", "embedding")
    known.update((key, (text, vector)) for key, text, vector in rows.iterator(chunk_size=5000))
    vectors = np.zeros((len(keys), encoder.dimensions), dtype=np.float32)
    missing = []
    for row, (key, text) in enumerate(zip(keys, texts)):
        if key in known and known[key][0] == text:
            vectors[row] = known[key][1]
        else:
            missing.append(row)
    if missing:
        vectors[missing] = encoder.encode([texts[row] for row in missing], progress=progress)
    return vectors


def version_ranking(model, catalogue, precision, progress=None):
    """``model`` ranking ``catalogue`` (a ``CatalogueIndex``) exactly as it serves, with its
    vectors of the catalogue's products held in process; queries encoded as web processes
    encode them (``QUERY_ENCODER``: the version's ONNX export where it has one)."""
    from .conf import shopguide_settings
    from .ml.version_files import load_query_encoder, load_ranking

    encoder = load_query_encoder(
        model.folder, precision, shopguide_settings.TORCH_THREADS, onnx=shopguide_settings.QUERY_ENCODER == "auto"
    )
    vectors = version_vectors(model, catalogue.keys, catalogue.texts, encoder, progress)
    return load_ranking(
        model.folder,
        catalogue,
        vectors,
        precision=precision,
        encoder=encoder,
        reranker_weight=model.reranker_weight,
        rerank_depth=model.rerank_depth,
    )
