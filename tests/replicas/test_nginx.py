"""The deployment guide's nginx.conf, run for real in front of three replicas."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Upstream
from tests.support import databases
from tests.support.process import ServeProcess, cli_env
from tests.support.servers import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CONFIG = Path(__file__).parents[2] / "docs" / "nginx.conf"
pytestmark = [
    pytest.mark.skipif(databases.SERVER_URL is None, reason="RELAYGATE_TEST_DATABASE_URL unset"),
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed"),
]


@pytest.fixture
def database() -> Iterator[str]:
    url = databases.create_postgres_database()
    yield url
    databases.drop(url)


def test_three_replicas_behind_nginx(tmp_path: Path, database: str, upstream: Upstream) -> None:
    """Requests through nginx reach all three replicas, streams included, and keep working
    when one replica goes away."""
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=database,
        RELAYGATE_ADMIN_KEY=admin_key,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
    )
    replicas = [ServeProcess(tmp_path, env).wait_ready() for _ in range(3)]
    listen = free_port()
    config = CONFIG.read_text()
    for documented, replica in zip(("8001", "8002", "8003"), replicas, strict=True):
        config = config.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{replica.port}")
    config = re.sub(r"listen 8080;", f"listen 127.0.0.1:{listen};", config)
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(config)
    assert NGINX
    nginx = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-g",
            f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = {"authorization": f"Bearer {admin_key}"}
    try:
        base = f"http://127.0.0.1:{listen}"
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            created = client.post(
                "/admin/api/v1/endpoints", json={"name": "up", "url": upstream.url}
            )
            assert created.status_code == 201
            time.sleep(1)  # every replica's snapshot has the endpoint by now
            for _ in range(9):
                reply = client.post(
                    "/v1/chat/completions", json={"model": "gpt-test", "messages": []}
                )
                assert reply.status_code == 200
            with client.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "gpt-test", "messages": [], "stream": True},
            ) as s:
                assert b"[DONE]" in b"".join(s.iter_raw())
            replicas[0].stop()
            for _ in range(6):
                assert client.get("/v1/models").status_code == 200
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for replica in replicas:
            replica.stop()
