"""How long a change made on one replica takes to reach another (issue 6: within 1 s).

Starts two real `relaygate serve` processes on a fresh PostgreSQL database, creates an
API key on replica A 20 times, and times until replica B accepts each one.

    RELAYGATE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=. .venv/bin/python bench/propagation.py
"""

from __future__ import annotations

import pathlib
import secrets
import statistics
import tempfile
import time

import httpx
from tests.support import databases
from tests.support.process import ServeProcess, cli_env

ROUNDS = 20


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    url = databases.create_postgres_database()
    key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(
        tmp,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_ADMIN_KEY=key,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
    )
    a = ServeProcess(tmp, env).wait_ready()
    b = ServeProcess(tmp, env).wait_ready()
    headers = {"authorization": f"Bearer {key}"}
    times = []
    try:
        for i in range(ROUNDS):
            new = httpx.post(
                a.url + "/admin/api/v1/keys", headers=headers, json={"name": f"k{i}"}
            ).json()["key"]
            started = time.monotonic()
            while (
                httpx.get(
                    b.url + "/v1/models", headers={"authorization": f"Bearer {new}"}
                ).status_code
                != 200
            ):
                time.sleep(0.002)
            times.append(time.monotonic() - started)
    finally:
        a.stop()
        b.stop()
        databases.drop(url)
    times.sort()
    print(
        f"key created on A accepted by B: median {statistics.median(times) * 1000:.1f} ms, "
        f"max {times[-1] * 1000:.1f} ms over {ROUNDS} keys"
    )


if __name__ == "__main__":
    main()
