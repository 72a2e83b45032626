import atexit
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def use_embedded_broker(sender, source, **kwargs):
    """Without CELERY_BROKER_URL, start (or join) the embedded Redis under var/."""
    if not source.broker_url:
        from . import embedded

        source.broker_url = embedded.redis_url()
        # The embedded Redis stops when its last client exits: this process's broker connections
        # are closed first (exit handlers run last-registered first), and the server given the
        # moment it takes to notice, or it would outlive the run.
        atexit.register(embedded.settle_redis_clients)
        atexit.register(lambda: sender.pool.force_close_all())
