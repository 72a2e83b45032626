"""The active version, loaded for serving and kept in step with the database.

A ``ServingIndex`` holds the active version's ranking (``ml.ranking.VersionRanking``: the
code that also evaluated the version and decided its activation) over the serving texts, and
the keys that may be recommended. Product vectors stay in PostgreSQL where pgvector is
installed (an HNSW index finds the nearest ones, while this process ranks the query's words:
the query is sent in pipeline mode and its rows read afterwards); elsewhere they are held
here and searched exactly with numpy.

``ServingState`` tells every process what changed: its ``epoch`` moves when a whole set of
vectors is swapped in or a version is activated (the index is rebuilt, in the background when
one is already serving), its ``changes`` counter on every single-product refresh (only the
changed products are applied, in a fraction of a second).
"""

import ctypes
import gc
import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import NamedTuple

import numpy as np
import psycopg
from django.core.signals import setting_changed
from django.db import connection

from .conf import shopguide_settings
from .embeddings import DIMENSIONS, has_pgvector
from .ml.precision import limit_blas_threads
from .ml.ranker import DEPTH
from .ml.ranking import CatalogueIndex, InProcessVectors, VersionRanking
from .ml.version_files import load_ranking, verify
from .models import ProductVector, ServingState
from .versions import active_model

logger = logging.getLogger(__name__)

STATE_TTL = 1.0  # seconds a process trusts the ServingState it read last
CLOCK_SLACK = timedelta(seconds=5)  # rows updated this long before a sync are read again
VECTORS_TABLE = ProductVector._meta.db_table


class Snapshot(NamedTuple):
    ranking: VersionRanking  # the version over the serving texts and vectors
    alive: set  # keys that may be recommended


@contextmanager
def pipelined_cursor():
    """A cursor in psycopg's pipeline mode: a query is sent when executed and PostgreSQL starts
    on it at once, while its rows are read only when fetched, so this process can work in
    between. It is psycopg's own cursor on Django's connection (errors still become Django's):
    parameters travel apart from the query, in binary where the query says ``%b``, which spares
    writing a query vector out as text (a third of a millisecond)."""
    connection.ensure_connection()
    raw = connection.connection  # Django makes client-side binding cursors; this one binds on the server
    with connection.wrap_database_errors, raw.pipeline(), psycopg.Cursor(raw) as cursor:
        yield cursor


class PgvectorVectors:
    """Nearest neighbours from pgvector's HNSW index; exact cosines for the lexical candidates."""

    def __init__(self, positions):
        self.positions = positions

    @contextmanager
    def search(self, query_vector, keys):
        """Send the nearest-neighbour query, then yield ``cosines(wanted)`` while PostgreSQL
        works on it (the caller does its lexical ranking meanwhile). ``cosines`` returns a
        cosine for every catalogue position: the HNSW top ``DEPTH`` and the ``wanted``
        positions exactly, -1 for the rest (they cannot be in any top list)."""
        vector = np.asarray(query_vector, dtype=np.float32)
        with pipelined_cursor() as cursor:  # hnsw.ef_search is set when the connection opens
            cursor.execute(
                f"SELECT product_key, 1 - (embedding <=> %b) FROM {VECTORS_TABLE} ORDER BY embedding <=> %b LIMIT %b",
                [vector, vector, DEPTH],
            )

            def cosines(wanted):
                rows = []
                if wanted:  # sent behind the nearest-neighbour query, without waiting for its rows
                    with psycopg.Cursor(cursor.connection) as exact:
                        exact.execute(
                            f"SELECT product_key, 1 - (embedding <=> %b) FROM {VECTORS_TABLE} "
                            "WHERE product_key = ANY(%b)",
                            [vector, [keys[index] for index in wanted]],
                        )
                        rows = exact.fetchall()
                rows += cursor.fetchall()
                cosine = np.full(len(keys), -1.0, dtype=np.float32)
                for key, value in rows:
                    index = self.positions.get(key)
                    if index is not None:
                        cosine[index] = value
                return cosine

            yield cosines

    def updated(self, positions, rows):
        return PgvectorVectors(positions)  # the database holds the vectors

    def neighbours(self, index, key, limit):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT v.product_key FROM {VECTORS_TABLE} v, "
                f"(SELECT embedding FROM {VECTORS_TABLE} WHERE product_key = %s) AS this "
                "ORDER BY v.embedding <=> this.embedding LIMIT %s",
                [key, limit + 1],
            )
            return [self.positions[key] for (key,) in cursor.fetchall() if key in self.positions]


def release_free_memory():
    """Hand the heap that building the indexes used and freed back to the system (glibc keeps
    it otherwise, and a web worker's resident size would carry it for its whole life)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def read_state():
    """``(epoch, changes)`` of the serving vectors; (0, 0) before anything was ever served."""
    return ServingState.objects.filter(pk=1).values_list("epoch", "changes").first() or (0, 0)


class ServingIndex:
    """Ranks queries for one version over the serving vectors; see the module docstring."""

    _lock = threading.Lock()
    _current = None
    _building = None  # the thread rebuilding after a new epoch, if any
    _empty_epoch = None  # an epoch found with nothing to serve: not looked for again
    _state, _state_read_at = (0, 0), 0.0

    def __init__(self, model, epoch, changes):
        self.model, self.epoch, self.changes = model, epoch, changes
        self.synced_at = None
        self.pgvector = has_pgvector(connection)
        self.load()

    def load(self):
        self.synced_at = self.database_now()
        rows = ProductVector.objects.filter(model=self.model).values_list(
            "product_key", "text", *(() if self.pgvector else ("embedding",))
        )
        loaded = sorted(rows, key=lambda row: row[0])  # see catalogue_order
        keys, texts = [row[0] for row in loaded], [row[1] for row in loaded]
        catalogue = CatalogueIndex(keys, texts)
        if self.pgvector:
            vectors = PgvectorVectors(catalogue.positions)
        else:
            vectors = InProcessVectors(np.stack([row[2] for row in loaded]) if loaded else np.zeros((0, DIMENSIONS)))
        ranking = load_ranking(
            self.model.folder,
            catalogue,
            vectors,
            precision=shopguide_settings.PRECISION,
            reranker_weight=self.model.reranker_weight,
            rerank_depth=self.model.rerank_depth,
            threads=shopguide_settings.TORCH_THREADS,  # web processes too: see TORCH_THREADS
            onnx=shopguide_settings.QUERY_ENCODER == "auto",
        )
        self.snapshot = Snapshot(ranking, set(keys))
        limit_blas_threads(shopguide_settings.TORCH_THREADS or 1)
        release_free_memory()

    # What one query reads: replaced as a whole, never changed in place.
    ranking = property(lambda self: self.snapshot.ranking)
    alive = property(lambda self: self.snapshot.alive)

    @staticmethod
    def database_now():
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]

    def apply_changes(self, changes):
        """Bring single-product refreshes in: new or changed rows, and removed products. Only
        texts that changed are analysed again (a recent rescore's rows are read but skipped)."""
        synced_at = self.database_now()
        rows = ProductVector.objects.filter(model=self.model, updated_at__gte=self.synced_at - CLOCK_SLACK)
        updated = list(rows.values_list("product_key", "text", *(() if self.pgvector else ("embedding",))))
        present = set(ProductVector.objects.filter(model=self.model).values_list("product_key", flat=True))
        ranking = self.ranking
        current = ranking.catalogue
        texts = {
            row[0]: row[1]
            for row in updated
            if row[0] not in current.positions or current.texts[current.positions[row[0]]] != row[1]
        }
        texts.update({key: "" for key in self.alive - present})  # removed: no terms left to match
        # Queries under way keep the catalogue and vectors they started with.
        catalogue = current.updated(texts) if texts else current
        vectors = ranking.vectors.updated(
            catalogue.positions, {} if self.pgvector else {catalogue.positions[row[0]]: row[2] for row in updated}
        )
        self.snapshot = Snapshot(ranking.over(catalogue, vectors), present)
        self.synced_at, self.changes = synced_at, changes

    def rank(self, query):
        """The version's ``Ranked`` keys for ``query``, among the products that may be
        recommended, reranked only within ``RERANK_BUDGET_MS``."""
        ranking, alive = self.snapshot
        return ranking.rank(query, keep=alive, rerank_budget=(shopguide_settings.RERANK_BUDGET_MS or 0) / 1000)

    def similar(self, key, limit):
        """Keys of the products closest to ``key`` in the version's vector space."""
        ranking, alive = self.snapshot
        catalogue, vectors = ranking.catalogue, ranking.vectors
        index = catalogue.positions.get(key)
        if index is None or key not in alive:
            return []
        keys = catalogue.keys
        return [keys[i] for i in vectors.neighbours(index, key, limit) if i != index and keys[i] in alive][:limit]

    # -- the process-wide instance ------------------------------------------------------------

    @classmethod
    def state(cls):
        now = time.monotonic()
        if now - cls._state_read_at > STATE_TTL or ServingState.changed_here_at >= cls._state_read_at:
            cls._state, cls._state_read_at = read_state(), now
        return cls._state

    @classmethod
    def get(cls, wait=False):
        """The index for the serving version, or None when no version's vectors are in. After
        a new epoch the previous index goes on serving while the new one is built in the
        background, unless ``wait``: then it is built here and now."""
        epoch, changes = cls.state()
        current = cls._current
        if current is not None and current.epoch == epoch:
            if current.changes != changes:
                with cls._lock:
                    if current.changes != changes:
                        current.apply_changes(changes)
            return current
        if current is not None and not wait:  # a new epoch: rebuild beside the serving index
            cls.rebuild_in_background(epoch, changes)
            return current
        with cls._lock:
            if (cls._current is None or cls._current.epoch != epoch) and cls._empty_epoch != epoch:
                cls._current = cls.build(epoch, changes)
            return cls._current

    @classmethod
    def serving_state(cls):
        """``(epoch, changes)`` of what ranks this process's queries now: the serving index's
        own, which lags ``state()`` while the index of a newer epoch is being built. Answers
        are cached under it, so an answer is only ever found under the state that ranked it."""
        return cls.state_of(cls.get())

    @classmethod
    def state_of(cls, index):
        return (index.epoch, index.changes) if index is not None else cls.state()

    @classmethod
    def build(cls, epoch, changes):
        """The index for the active version, or None without one, or when its files are
        missing or changed (then the failure is logged). Either way the epoch is remembered
        as empty, so full-text search serves until the next activation or rescore."""
        model = active_model()
        if model is None or not ProductVector.objects.filter(model=model).exists():
            cls._empty_epoch = epoch
            return None
        try:
            verify(model.folder, model.checksum)
            return cls(model, epoch, changes)
        except Exception:
            cls._empty_epoch = epoch
            logger.exception("The active version %s cannot serve; full-text search answers instead.", model.version)
            return None

    @classmethod
    def rebuild_in_background(cls, epoch, changes):
        with cls._lock:
            if cls._building is not None and cls._building.is_alive():
                return

            def rebuild():
                try:
                    index = cls.build(epoch, changes)
                    with cls._lock:
                        cls._current = index
                except Exception:
                    logger.exception("Rebuilding the serving index failed; the previous one keeps serving.")
                finally:
                    connection.close()

            cls._building = threading.Thread(target=rebuild, name="shopguide-serving-rebuild", daemon=True)
            cls._building.start()

    @classmethod
    def reset(cls):
        """Forget the loaded index (tests, and processes that want the newest at once)."""
        with cls._lock:
            cls._current, cls._state_read_at, cls._empty_epoch = None, 0.0, None


def _forget_index(*, setting, **kwargs):
    if setting == "SHOPGUIDE":  # PRECISION, TORCH_THREADS, RERANK_BUDGET_MS and the catalogue read
        ServingIndex.reset()


setting_changed.connect(_forget_index, dispatch_uid="shopguide.serving.forget_index")
