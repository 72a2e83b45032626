"""Turn a ``postgresql://`` URL into a Django ``DATABASES`` entry."""

from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = {"postgres", "postgresql", "pgsql"}


def parse_database_url(url):
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"DATABASE_URL must start with postgresql:// (got {parts.scheme!r}).")
    options = dict(parse_qsl(parts.query))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        # A unix-socket folder may come as ?host=/path (libpq style) instead of a hostname.
        "HOST": options.pop("host", None) or parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }
