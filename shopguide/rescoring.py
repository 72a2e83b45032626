"""Encode the catalogue with a version and swap the serving vectors in one transaction.

A rescore splits the available products into chunks; each chunk (a Celery task, so several
workers share the work) writes ``PendingVector`` rows. The chunk that completes the set swaps
them into ``ProductVector`` (and activates the version when asked) in one transaction, so
readers see either the old catalogue or the new one, never a mix. A failed or abandoned rescore
leaves the serving vectors as they were. Products whose text is unchanged since training reuse
the vectors the training run stored.

With pgvector, maintaining the HNSW index row by row would make the swap of a large catalogue
take minutes (measured: 182 s for 54,667 rows, against 35 s to build the index afresh). So the
swap drops the index, moves the rows in one statement, and ``build_vector_index`` then builds
it again with ``CREATE INDEX CONCURRENTLY``, which blocks neither readers nor writers; until it
is ready, PostgreSQL answers nearest-neighbour queries by an exact scan.
"""

import logging
import time

from django.core.signals import setting_changed
from django.db import connection, transaction
from django.utils import timezone

from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .embeddings import has_pgvector
from .ml.version_files import VersionFilesError, load_query_encoder, stored_vectors_by_key, verify
from .models import PendingVector, ProductVector, Rescore, ServingState
from .signals import vectors_replaced
from .versions import ActivationError, activate, active_model

logger = logging.getLogger(__name__)

HNSW_INDEX = "shopguide_productvector_hnsw"
_encoders = {}  # model pk -> Encoder, loaded once per worker process
_stored = {}  # (model pk, checksum) -> the vectors its training run stored, read once per process


class RescoreError(Exception):
    """A rescore that cannot start; the serving vectors are unchanged."""


def encoder_for(model):
    """What encodes products for ``model``: its torch encoder (in batches faster than the ONNX
    export, float32 and bfloat16 alike: bench/training_speed.py), or its ONNX export where
    torch is not installed."""
    if model.pk not in _encoders:
        _encoders.clear()  # one version at a time is enough
        try:
            import torch  # noqa: F401
        except ImportError:
            onnx = True
        else:
            onnx = False
        _encoders[model.pk] = load_query_encoder(
            model.folder, shopguide_settings.PRECISION, shopguide_settings.TORCH_THREADS, onnx=onnx
        )
    return _encoders[model.pk]


def stored_vectors(model):
    """``{key: (text, vector)}`` that the training run stored with the version, if any; read
    once per process and version (a version's files never change), not once per chunk."""
    key = (model.pk, model.checksum)
    if key not in _stored:
        _stored.clear()  # one version at a time is enough
        _stored[key] = stored_vectors_by_key(model.folder)
    return _stored[key]


def start_rescore(model, activate=True, reuse_vectors=True):
    """Create a ``Rescore`` of the available catalogue; return it and its chunks of keys.
    ``reuse_vectors=False`` encodes every product again (benchmarks, a changed encoder setup)."""
    try:
        verify(model.folder, model.checksum)
    except VersionFilesError as exc:
        raise RescoreError(f"Version {model.version} cannot be used: {exc}") from exc
    source = get_catalog_source()
    keys = [source.key_for_pk(pk) for pk in source.available_products().order_by("pk").values_list("pk", flat=True)]
    size = shopguide_settings.RESCORE_CHUNK_SIZE
    chunks = [keys[start : start + size] for start in range(0, len(keys), size)] or [[]]
    for stale in Rescore.objects.filter(status=Rescore.Status.RUNNING):  # its worker died, or it is overtaken
        fail_rescore(stale, "Superseded by a newer rescore before it finished.")
    rescore = Rescore.objects.create(
        model=model, activate=activate, reuse_vectors=reuse_vectors, chunks=len(chunks), products=len(keys)
    )
    return rescore, chunks


def encode_chunk(rescore_id, index, keys):
    """Write one chunk's vectors; swap them in if it is the last chunk (then return True).
    Safe to repeat."""
    rescore = Rescore.objects.select_related("model").get(pk=rescore_id)
    if rescore.status != Rescore.Status.RUNNING:
        return False
    source = get_catalog_source()
    pks = [source.model._meta.pk.to_python(key) for key in keys]
    texts = dict(source.iter_texts(source.available_products().filter(pk__in=pks)))
    stored = stored_vectors(rescore.model) if rescore.reuse_vectors else {}
    reusable = {key: stored[key][1] for key, text in texts.items() if key in stored and stored[key][0] == text}
    missing = [key for key in texts if key not in reusable]
    if missing:
        vectors = encoder_for(rescore.model).encode([texts[key] for key in missing])
        reusable.update(zip(missing, vectors))
    with transaction.atomic():
        PendingVector.objects.filter(rescore=rescore, chunk=index).delete()
        PendingVector.objects.bulk_create(
            PendingVector(rescore=rescore, chunk=index, product_key=key, text=texts[key], embedding=reusable[key])
            for key in texts
        )
    return mark_chunk_done(rescore, index) and finish_rescore(rescore)


def mark_chunk_done(rescore, index):
    """Record chunk ``index`` as done; true when every chunk is."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Rescore._meta.db_table} SET done_chunks = array_append(done_chunks, %s) "
            "WHERE id = %s AND NOT (%s = ANY(done_chunks)) RETURNING cardinality(done_chunks), chunks",
            [index, rescore.pk, index],
        )
        row = cursor.fetchone()
    return row is not None and row[0] >= row[1]


def finish_rescore(rescore):
    """Swap the pending vectors in (and activate the version) in one transaction."""
    try:
        with transaction.atomic():
            rescore = Rescore.objects.select_for_update().select_related("model").get(pk=rescore.pk)
            if rescore.status != Rescore.Status.RUNNING:
                return False
            if rescore.activate:
                activate(rescore.model)
            pgvector, serving_table = has_pgvector(connection), ProductVector._meta.db_table
            with connection.cursor() as cursor:
                if pgvector:
                    cursor.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
                cursor.execute(f"DELETE FROM {serving_table}")
                cursor.execute(
                    f"INSERT INTO {serving_table} (product_key, model_id, text, embedding, updated_at) "
                    f"SELECT product_key, %s, text, embedding, now() FROM {PendingVector._meta.db_table} "
                    "WHERE rescore_id = %s",
                    [rescore.model_id, rescore.pk],
                )
            PendingVector.objects.filter(rescore=rescore).delete()
            ServingState.bump(epoch=True)
            rescore.status, rescore.finished_at = Rescore.Status.SUCCEEDED, timezone.now()
            rescore.save(update_fields=["status", "finished_at"])
            transaction.on_commit(lambda: vectors_replaced.send(sender=Rescore, rescore=rescore))
    except ActivationError as exc:
        fail_rescore(rescore, str(exc))
        raise
    return True


def build_vector_index():
    """(Re)build the HNSW index of the serving vectors without blocking anyone; a no-op where
    pgvector is missing or the index is there and valid. Returns the seconds it took."""
    if not has_pgvector(connection):
        return 0.0
    if connection.in_atomic_block:  # a concurrent build cannot run inside a transaction
        logger.warning("Not building the vector index inside a transaction; exact search serves meanwhile.")
        return 0.0
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            [HNSW_INDEX],
        )
        row = cursor.fetchone()
        if row is not None and row[0]:
            return 0.0
        if row is not None:  # left invalid by an interrupted build
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {HNSW_INDEX}")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        try:
            cursor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HNSW_INDEX} ON {ProductVector._meta.db_table} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
        finally:
            cursor.execute("RESET maintenance_work_mem")
    return time.monotonic() - started


def fail_rescore(rescore, error):
    Rescore.objects.filter(pk=rescore.pk, status=Rescore.Status.RUNNING).update(
        status=Rescore.Status.FAILED, error=error, finished_at=timezone.now()
    )
    PendingVector.objects.filter(rescore_id=rescore.pk).delete()


def rescore_now(model, activate=True, progress=None, reuse_vectors=True):
    """Rescore in this process (commands and tests); return the finished ``Rescore``."""
    rescore, chunks = start_rescore(model, activate, reuse_vectors)
    for index, keys in enumerate(chunks):
        try:
            encode_chunk(rescore.pk, index, keys)
        except Exception as exc:
            fail_rescore(rescore, f"{type(exc).__name__}: {exc}")
            raise
        if progress:
            progress("rescoring catalogue", index + 1, len(chunks))
    build_vector_index()
    rescore.refresh_from_db()
    return rescore


def valid_keys(source, keys):
    """``{key: primary key}`` for the keys that can name a product of the model."""
    found = {}
    for key in keys:
        try:
            found[str(key)] = source.model._meta.pk.to_python(key)
        except Exception:  # not a primary key of this model: no product has it
            continue
    return found


def refresh_products(keys, encode=True):
    """Bring the serving vectors of ``keys`` in step with the catalogue: drop those of products
    that are gone or unavailable, and (``encode``) encode with the active version those whose
    text changed or that have none yet. One serving-state change for all, so every cached
    answer, shared or per process, is retired. Returns ``(encoded, dropped)``."""
    keys = {str(key) for key in keys}
    if not keys:
        return 0, 0
    source, model = get_catalog_source(), active_model()
    available = source.available_products().filter(pk__in=set(valid_keys(source, keys).values()))
    gone = keys - {source.key_for_pk(pk) for pk in available.values_list("pk", flat=True)}
    changed, texts = [], {}
    if encode and model is not None:
        texts = dict(source.iter_texts(available))
        serving = {
            key: (text, model_id)
            for key, text, model_id in ProductVector.objects.filter(product_key__in=texts).values_list(
                "product_key", "text", "model_id"
            )
        }
        changed = [key for key, text in texts.items() if serving.get(key) != (text, model.pk)]
    vectors = encoder_for(model).encode([texts[key] for key in changed]) if changed else []
    with transaction.atomic():
        dropped, _ = ProductVector.objects.filter(product_key__in=gone).delete()
        for key, vector in zip(changed, vectors):
            ProductVector.objects.update_or_create(
                product_key=key, defaults={"model": model, "text": texts[key], "embedding": vector}
            )
        ServingState.bump()  # also for a change the vectors do not show (a price): answers carry it
    if dropped or changed:
        vectors_replaced.send(sender=ProductVector, rescore=None)
    return len(changed), dropped


def refresh_product(key):
    """Re-encode one product with the active version, or drop it when it is gone or unavailable."""
    return refresh_products([key])


def stale_keys():
    """Keys whose serving vector no longer matches the catalogue: products deleted or made
    unavailable, texts changed, available products without a vector. What changed without a
    signal (``queryset.update()``, raw SQL, another program) shows up here."""
    if active_model() is None:
        return []
    serving = dict(ProductVector.objects.values_list("product_key", "text").iterator(chunk_size=5000))
    stale = [key for key, text in get_catalog_source().iter_texts() if serving.pop(key, None) != text]
    return stale + list(serving)  # what is left serves no available product


def _forget_encoders(*, setting, **kwargs):
    if setting == "SHOPGUIDE":  # PRECISION and TORCH_THREADS
        _encoders.clear()


setting_changed.connect(_forget_encoders, dispatch_uid="shopguide.rescoring.forget_encoders")
