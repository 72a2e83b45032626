"""Run the demo shop end to end: ``python -m config.demo [--data DIR] [--port 8000]``.

Starts (or joins) the embedded PostgreSQL and Redis unless DATABASE_URL / CELERY_BROKER_URL
name servers, migrates, loads the bundled demo catalogue (and DIR when given), makes an admin
account, then runs the web server and a Celery worker until Ctrl-C, which stops them all. On
its first run it queues a fine-tuning on the demo data, which the worker picks up.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import embedded

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "catalog" / "demo_data"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"


def manage(*args, env):
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def create_admin(env):
    script = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        f"if not User.objects.filter(username={ADMIN_USER!r}).exists():\n"
        f"    User.objects.create_superuser({ADMIN_USER!r}, 'admin@example.com', {ADMIN_PASSWORD!r})\n"
    )
    manage("shell", "-c", script, env=env)


def stop_all(processes):
    """Each child leads its own process group, so stopping it stops its helpers too (the
    worker's pool processes); one still busy after 10 s is killed."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a dataset folder to load after the demo catalogue")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.postgres_url()
    if not env.get("CELERY_BROKER_URL"):
        env["CELERY_BROKER_URL"] = embedded.redis_url()
    print("shopguide demo: PostgreSQL and broker ready", flush=True)

    manage("migrate", "--noinput", "-v", "0", env=env)
    manage("load_catalog", str(DEMO_DATA), env=env)
    if args.data:
        manage("load_catalog", args.data, env=env)
    create_admin(env)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the demo even when started by a parent that ignores them.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes = []
    try:
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "1",
                    "--queues",
                    "celery,shopguide_training,shopguide_rescore",
                ],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"{args.host}:{args.port}"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        )
        # A fresh demo learns from its catalogue right away: the admin shows the run's progress.
        manage("shopguide_train", "--unless-trained", env=env)
        print(
            f"\nshopguide demo running:\n"
            f"  shop   http://{args.host}:{args.port}/\n"
            f"  admin  http://{args.host}:{args.port}/admin/  (user {ADMIN_USER}, password {ADMIN_PASSWORD})\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("A demo process exited; stopping the others.", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 0
    finally:
        stop_all(processes)
    print("shopguide demo stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
