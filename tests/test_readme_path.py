"""End to end, the README way: the main job on the bundled data into the embedded default store."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pymongo

from contract import schema
from pipeline.publish.store import Store
from tests.support.paths import REPO


def test_readme_gives_exactly_two_commands_and_make_runs_them():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s{4}(\S.*)$", quick, flags=re.M)
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(
        r"^run: setup\n\t\$\(BIN\)/python -m pipeline run\n"
        r"\t\$\(BIN\)/python -m api --host 127\.0\.0\.1 --port 8080\n",
        makefile,
        flags=re.M,
    )
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_main_job_into_the_embedded_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}
    env["PYTHONPATH"] = str(REPO)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline", "run"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert re.search(
            r"embedded store \(SecantusDB\) serving at mongodb://127\.0\.0\.1:\d+", out.stderr
        )
        state = json.loads((tmp_path / "var" / "mongo.json").read_text())
        assert (tmp_path / "var" / "mongo").is_dir()  # durable files in the work dir
        client = pymongo.MongoClient(state["url"], serverSelectionTimeoutMS=5000)
        store = Store(client.get_default_database())
        assert store.collection(schema.USERS).count_documents({}) == 610
        assert store.collection(schema.MOVIES).count_documents({}) == 9742
        client.close()
        assert "held-out RMSE" in out.stdout and "NDCG" in out.stdout
        assert list((tmp_path / "runs").glob("*/report.md"))
        _api_serves_the_loaded_data(tmp_path, env)
    finally:
        subprocess.run(
            [sys.executable, "-m", "pipeline", "store", "stop"], cwd=tmp_path, env=env, timeout=60
        )


def _api_serves_the_loaded_data(cwd: Path, env: dict) -> None:
    """The second half of `make run`: the API on loopback, over the same embedded store."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = subprocess.Popen(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/user/1/recommendation", timeout=5
                ) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert api.poll() is None and time.monotonic() < deadline, "API did not come up"
                time.sleep(0.3)
        assert body["source"] == "precomputed" and len(body["recommendations"]) == 10
        assert all(rec["title"] for rec in body["recommendations"])
    finally:
        os.killpg(api.pid, 15)
        api.wait(30)
