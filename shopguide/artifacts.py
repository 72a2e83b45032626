"""Trained model versions on disk: one folder per version under MEDIA_ROOT, with a checksum."""

import hashlib
from pathlib import Path

from django.conf import settings

ARTIFACTS_FOLDER = "shopguide/models"


class ArtifactError(Exception):
    """A model folder that is missing or whose files changed since training."""


def artifacts_root():
    return Path(settings.MEDIA_ROOT) / ARTIFACTS_FOLDER


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
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"The model folder {folder} is missing.")
    actual = folder_checksum(folder)
    if actual != expected_checksum:
        raise ArtifactError(
            f"The model folder {folder} was changed after training "
            f"(checksum {actual[:12]}…, expected {expected_checksum[:12]}…); retrain or restore it."
        )
