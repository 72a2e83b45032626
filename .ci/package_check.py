"""The app installed from its wheel, in a project that is not the demo (its products are
``auth.Group`` rows), run by .ci/package with each virtual environment's Python:

    python package_check.py serving|training   import and check the app; only the training
                                               install has torch
    python package_check.py train DATABASE_URL MEDIA_ROOT
                                               (training install) a catalogue and a first
                                               version, trained, activated and rescored
    python package_check.py serve DATABASE_URL MEDIA_ROOT
                                               (serving install) that version answers a search,
                                               in Python and over the API, without torch

Run from outside the repository, so that only the installed package is importable.
"""

import sys

import django
from django.conf import settings

PRODUCTS = [
    "cordless drill 18v with two batteries", "drill bit set for metal", "impact driver brushless",
    "garden hose 50 ft", "hose reel cart", "brass hose nozzle", "claw hammer 16 oz", "rubber mallet",
    "led bulb 60 watt", "smart light bulb colour", "ceiling fan with light", "table lamp brass",
    "paint roller kit", "interior paint white gallon", "painter's tape blue", "ladder 6 ft aluminium",
    "step stool folding", "toolbox steel", "tape measure 25 ft", "stud finder",
    "wood screws box", "drywall anchors", "circular saw 7-1/4 in", "jigsaw blades", "safety glasses",
    "work gloves leather", "extension cord 25 ft", "power strip surge", "smoke detector", "door lock deadbolt",
]  # fmt: skip


def configure(database_url=None, media_root="/srv/shop/media"):
    if database_url:
        from urllib.parse import urlsplit

        url = urlsplit(database_url)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "postgres",
            "HOST": url.hostname,
            "PORT": url.port or 5432,
        }
    else:
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": "unused"}
    settings.configure(
        SECRET_KEY="package-check",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            *("django.contrib.admin", "django.contrib.contenttypes", "django.contrib.auth"),
            *("django.contrib.sessions", "django.contrib.messages", "django.contrib.postgres"),
            *("rest_framework", "shopguide"),
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={"default": database},
        ROOT_URLCONF="shopguide.urls",
        MEDIA_ROOT=media_root,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "shop_cache"}},
        SHOPGUIDE={"PRODUCT_MODEL": "auth.Group", "TEXT_FIELDS": ["name"], "TORCH_THREADS": 1},
    )
    django.setup()


def imports(install):
    from django.core.management import call_command

    import shopguide.admin  # noqa: F401
    import shopguide.api  # noqa: F401
    import shopguide.services  # noqa: F401
    import shopguide.tasks  # noqa: F401

    call_command("check", fail_level="WARNING")
    if install == "serving":  # serves without torch; training says what to install
        assert "torch" not in sys.modules, "a web process imported torch"
        try:
            import shopguide.training  # noqa: F401
        except ImportError as exc:
            assert "django-shopguide[training]" in str(exc), exc
        else:
            raise AssertionError("torch is installed in the serving environment")
    else:
        import shopguide.training  # noqa: F401


def train():
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    Group.objects.bulk_create(Group(name=name) for name in PRODUCTS)
    call_command("shopguide_train", "--sync", "--activate", "--max-pairs", "64", "--no-reranker", verbosity=0)
    from shopguide.versions import active_model

    model = active_model()
    assert model is not None and model.query_encoder["served"], model and model.query_encoder
    print(f"package (training): v{model.version} trained, exported to ONNX and serving")


def serve():
    from django.test import Client

    from shopguide.services import recommend
    from shopguide.versions import active_model

    version = active_model().version
    found = recommend("garden hose")
    assert found.model_version == version and found, (found.model_version, found)
    answer = Client().get("/recommendations/", {"q": "drill for metal"}).json()
    assert answer["model_version"] == version and answer["results"], answer
    loaded = [name for name in ("torch", "transformers") if name in sys.modules]
    assert not loaded, f"serving imported {loaded}"
    titles = [item.title for item in found][:3]
    print(f"package (serving): v{version} answers without torch: garden hose -> {titles}")


if __name__ == "__main__":
    mode = sys.argv[1]
    configure(*sys.argv[2:4])
    if mode in ("serving", "training"):
        imports(mode)
        import shopguide

        print(f"package ({mode}): installed, imported and checked:", shopguide.__file__)
    else:
        {"train": train, "serve": serve}[mode]()
