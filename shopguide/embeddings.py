"""Vector columns that work with and without the pgvector extension.

Where pgvector is installed the column is ``vector(n)`` with an HNSW index and PostgreSQL does
the nearest-neighbour search; elsewhere it is ``real[]`` and shopguide searches in process.
"""

import numpy as np
from django.core.signals import setting_changed
from django.db import models
from django.db.backends.signals import connection_created

DIMENSIONS = 384  # the vector size of the stored columns: BASE_MODEL must encode to this size
_PGVECTOR = {}  # database alias -> whether the vector extension is installed
# HNSW searches return at most ef_search rows: well above the 100 candidates serving takes.
EF_SEARCH = 200


def has_pgvector(connection):
    if connection.alias not in _PGVECTOR:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            _PGVECTOR[connection.alias] = cursor.fetchone() is not None
    return _PGVECTOR[connection.alias]


def pgvector_available(connection):
    """Whether the server could install pgvector (it ships the extension's files)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


def forget_pgvector(connection):
    _PGVECTOR.pop(connection.alias, None)


def register_pgvector(sender, connection, **kwargs):
    """Let psycopg send and receive numpy arrays as ``vector`` values."""
    if connection.vendor == "postgresql" and has_pgvector(connection):
        from pgvector.psycopg import register_vector

        register_vector(connection.connection)
        with connection.connection.cursor() as cursor:
            cursor.execute(f"SET hnsw.ef_search = {EF_SEARCH}")


connection_created.connect(register_pgvector)


def _forget_all(*, setting, **kwargs):
    if setting == "DATABASES":
        _PGVECTOR.clear()


setting_changed.connect(_forget_all, dispatch_uid="shopguide.embeddings.forget")


class EmbeddingField(models.Field):
    """A fixed-size float32 vector: ``vector(n)`` with pgvector, ``real[]`` without."""

    description = "Embedding vector"

    def __init__(self, *args, dimensions=DIMENSIONS, **kwargs):
        self.dimensions = dimensions
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["dimensions"] = self.dimensions
        return name, path, args, kwargs

    def db_type(self, connection):
        return f"vector({self.dimensions})" if has_pgvector(connection) else "real[]"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        vector = np.asarray(value, dtype=np.float32)
        if vector.shape != (self.dimensions,):
            raise ValueError(f"expected a vector of {self.dimensions} numbers, got shape {vector.shape}")
        return vector if has_pgvector(connection) else vector.tolist()

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if hasattr(value, "to_numpy"):  # pgvector's Vector
            value = value.to_numpy()
        elif isinstance(value, str):  # "[0.1,0.2,...]" from a connection without the adapter
            value = np.array(value.strip("[]").split(","), dtype=np.float32)
        return np.asarray(value, dtype=np.float32)
