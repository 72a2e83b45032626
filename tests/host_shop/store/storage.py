from django.core.files.storage import FileSystemStorage, Storage


class SharedStorage(Storage):
    """A versions' storage without local paths, as a cloud storage is: files reach it and come
    back only through Django's storage API (here kept in a folder that stands for the bucket)."""

    def __init__(self, location):
        self.bucket = FileSystemStorage(location=location)

    def _open(self, name, mode="rb"):
        return self.bucket.open(name, mode)

    def _save(self, name, content):
        return self.bucket.save(name, content)

    def exists(self, name):
        return self.bucket.exists(name)

    def listdir(self, path):
        return self.bucket.listdir(path)

    def delete(self, name):
        self.bucket.delete(name)

    def size(self, name):
        return self.bucket.size(name)
