"""The README's demo, end to end: embedded PostgreSQL and Redis, migrations, the bundled
catalogue, a web server and a Celery worker, stopped cleanly by Ctrl-C."""

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_PRODUCTS = ROOT / "catalog" / "demo_data" / "products.csv"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, process, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the demo exited early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def collect_output(process):
    lines = []
    thread = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    thread.start()
    return lines, thread


def wait_for_line(lines, text, process, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(text in line for line in lines):
            return
        time.sleep(0.5)
    pytest.fail(f"{text!r} not printed within {timeout}s:\n{''.join(lines)}")


@pytest.mark.slow
def test_demo_serves_the_shop_and_admin_and_stops_on_ctrl_c(tmp_path):
    with DEMO_PRODUCTS.open(encoding="utf-8") as file:
        product = next(csv.DictReader(file))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["SHOPGUIDE_VAR_DIR"] = str(tmp_path / "var")
    demo = subprocess.Popen(
        [sys.executable, "-m", "config.demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    lines, reader = collect_output(demo)
    try:
        wait_for(base + "/", demo)
        words = " ".join(product["title"].split()[1:4])
        page = wait_for(f"{base}/search/?{urlencode({'q': words})}", demo)
        assert product["title"].replace("&", "&amp;") in page

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        login_page = opener.open(base + "/admin/login/").read().decode()
        token = login_page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        form = urlencode({"username": "admin", "password": "admin", "csrfmiddlewaretoken": token, "next": "/admin/"})
        opener.open(
            urllib.request.Request(
                base + "/admin/login/", data=form.encode(), headers={"Referer": base + "/admin/login/"}
            )
        )
        changelist = (
            opener.open(f"{base}/admin/catalog/product/?{urlencode({'q': product['product_id']})}").read().decode()
        )
        assert "Select product to change" in changelist
        assert product["title"].replace("&", "&amp;") in changelist
        wait_for_line(lines, "ready.", demo)  # the Celery worker is up
        wait_for_line(lines, "shopguide demo running", demo)  # the first training is queued
    finally:
        family = psutil.Process(demo.pid).children(recursive=True)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        try:
            demo.wait(timeout=120)
        finally:
            for process in family:  # whatever the outcome, leave nothing running
                if process.is_running():
                    process.kill()
            reader.join(timeout=10)
    output = "".join(lines)
    assert demo.returncode == 0, output
    assert "shopguide demo stopped." in output
    assert not (tmp_path / "var" / "pgdata" / "postmaster.pid").exists(), "PostgreSQL was left running"
