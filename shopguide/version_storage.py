"""Where versions' files live: a Django storage (``SHOPGUIDE["VERSIONS_STORAGE"]``, an alias of
``STORAGES``), so the machines that train and those that rescore or serve share versions through
any backend (a shared folder, S3, ...). Without that alias: a private folder beside
``MEDIA_ROOT`` (``shopguide-versions/``), never inside it, where the web server would publish
weights and search memory.

Loading a version needs a local folder. A storage with local paths is read in place; any other
is copied once per version into ``VERSIONS_CACHE`` (checked against the version's checksum
before it serves, like any version). Versions stored before under ``MEDIA_ROOT`` keep loading
from there.
"""

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages

from .conf import shopguide_settings

FOLDER = "shopguide/models"  # versions' names inside the storage: FOLDER/<stamp>/...


def default_location():
    media = Path(settings.MEDIA_ROOT) if settings.MEDIA_ROOT else None
    return (media.resolve().parent if media else Path.cwd()) / "shopguide-versions"


def versions_storage():
    """The storage of versions: the ``VERSIONS_STORAGE`` alias, else the default folder."""
    alias = shopguide_settings.VERSIONS_STORAGE
    if alias in settings.STORAGES:
        return storages[alias]
    return FileSystemStorage(location=default_location())


def local_path(storage, name):
    """Where ``name`` lies on this machine's disk, or None for a storage without local paths."""
    try:
        return Path(storage.path(name))
    except NotImplementedError:
        return None


def cache_root():
    return Path(shopguide_settings.VERSIONS_CACHE or Path(tempfile.gettempdir()) / "shopguide-versions")


def stored_files(storage, name):
    """Names of every file under ``name`` in ``storage``, relative to it."""
    folders, files = storage.listdir(name)
    return list(files) + [
        f"{folder}/{file}" for folder in folders for file in stored_files(storage, f"{name}/{folder}")
    ]


def publish(folder, name):
    """Store the files of local ``folder`` as version ``name``."""
    storage = versions_storage()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            wanted = f"{name}/{path.relative_to(folder).as_posix()}"
            with path.open("rb") as file:
                stored = storage.save(wanted, File(file))
            if stored != wanted:
                raise FileExistsError(f"The versions' storage already holds {wanted}.")


def version_folder(model):
    """A local folder holding ``model``'s files (a copy, for a storage without local paths)."""
    storage, name = versions_storage(), model.artifact_path
    legacy = Path(settings.MEDIA_ROOT) / name if settings.MEDIA_ROOT else None
    local = local_path(storage, name)
    if local is not None and (local.exists() or legacy is None or not legacy.exists()):
        return local
    if legacy is not None and legacy.exists():
        return legacy
    copy = cache_root() / model.checksum
    if not copy.exists() and storage.exists(name):
        cache_root().mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{model.checksum}-", dir=cache_root()))
        for relative in stored_files(storage, name):
            target = partial / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(f"{name}/{relative}", "rb") as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
        try:
            partial.rename(copy)  # whole or not at all: another process may have won the race
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return copy


def delete_version_files(model):
    """Delete ``model``'s files: in the storage, this machine's copy, a folder from before."""
    storage, name = versions_storage(), model.artifact_path
    if storage.exists(name):
        for relative in stored_files(storage, name):
            storage.delete(f"{name}/{relative}")
        local = local_path(storage, name)
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)  # the emptied folders
    shutil.rmtree(cache_root() / model.checksum, ignore_errors=True)
    if settings.MEDIA_ROOT:
        shutil.rmtree(Path(settings.MEDIA_ROOT) / name, ignore_errors=True)
