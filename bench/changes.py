"""Configuration changes at scale: how fast the admin API answers them, how soon they reach
the proxy, and what they cost the traffic served meanwhile.

For each configuration (a size and a store) it seeds a fresh database straight in SQL
(users spread over 50 groups, each user in 1 to 3, groups granted models by id and some
a whole endpoint, keys spread over the users), starts relaygate on it (one process on a
SQLite file, or two replicas on one fresh PostgreSQL database) in front of a static nginx
upstream, and measures:

1. from the answer to ``POST /admin/api/v1/keys`` to the new key being accepted by
   ``GET /v1/models``, on the replica that created it and (PostgreSQL) on the other;
2. p50/p99 of proxied JSON chat completions at c=16 (wrk), first with no change, then
   with 10 changes a second going on (key creations, revocations and group grant changes,
   over every replica, open loop, at most 4 in flight) and a sync of the big endpoint
   every 30 s that really changes a tenth of its models;
3. the event-loop stalls during each window, from the histogram
   ``relaygate_event_loop_lag_seconds`` on ``/metrics`` ("n/a" where it is not exported);
4. (once per store) the resident memory per API key and per model: relaygate started on
   an empty database, on 100,000 keys with 10 models, and on 10,000 models with 1 key.

``--admin-only`` measures instead the admin API's answer to a group grant, a key creation
and a revocation, one at a time, at 100,000 keys, 5,000 users and 2,000 models.

    .venv/bin/python bench/changes.py --sizes small --store sqlite --duration 5  # 2 min
    .venv/bin/python bench/changes.py                  # every size and store, and memory
    .venv/bin/python bench/changes.py --admin-only     # both stores
    .venv/bin/python bench/changes.py --rss-only

Options: ``--duration S`` per wrk window (default 20), ``--sizes small,large``, ``--store
sqlite,postgresql``, ``--admin-only``, ``--rss-only``, ``--rounds N`` (samples of each timed
change, default 20), ``--out FILE``. On the full-rebuild snapshot (before incremental
changes) one change takes about 7 s at the admin size and about a minute at the large
one, so ``--admin-only`` takes about 25 minutes and the large size wants ``--rounds 5``.
That code also holds about 9 GB per process at the large size (12 GB while rebuilding):
should the machine's available memory fall under 3 GB, the bench kills the replicas and
reports the configuration as stopped, rather than let the OOM killer choose a process.

Sizes: small = 1,000 keys, 10 users, 100 models; large = 100,000 keys, 5,000 users,
10,000 models. PostgreSQL is the server at ``BENCH_POSTGRES_URL`` (else
``RELAYGATE_TEST_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``);
each run creates its own database and drops it. Needs nginx and wrk (bench/setup.sh).
Results are printed as they come, saved to ``bench/out/changes.json`` (``--out``), and
summed up at the end as Markdown tables for bench/RESULTS.md, with the targets beside.
It is run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import pathlib
import random
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

# bench/ is the script's directory, so its sibling is importable as a module.
from compare import Gateway, Nginx, check, free_port, models_body, request_body, rss_mb, wrk

from relaygate.keys import display_prefix, generate_key, hash_key

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
POSTGRES_SERVER = (
    os.environ.get("BENCH_POSTGRES_URL")
    or os.environ.get("RELAYGATE_TEST_DATABASE_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET_KEY = secrets.token_urlsafe(32)
ADMIN_KEY = "rg-" + secrets.token_urlsafe(32)
LONG_SYNC_INTERVAL = 30 * 86400  # no periodic sync during a run: the bench syncs itself
GROUPS = 50
CHANGE_RATE = 10.0  # configuration changes per second during the changes window
MAX_IN_FLIGHT = 4  # changes outstanding at once; a change due while 4 are is skipped
CALL_TIMEOUT = 30.0  # seconds one admin call may take before it counts as timed out
SYNC_TIMEOUT = 60.0
ADMIN_TIMEOUT = 300.0  # one change at a time (--admin-only, new keys): its whole answer wanted
SYNC_EVERY = 30.0
ACCEPT_TIMEOUT = 120.0  # seconds a new key may take to be accepted, from the answer
CONNECTIONS = 16
LAG_METRIC = "relaygate_event_loop_lag_seconds"
RSS_REQUESTS = 300
MIN_AVAILABLE_MB = 3072  # below this much free memory the running replicas are killed


@dataclass(frozen=True)
class Size:
    keys: int
    users: int
    models: int


SIZES = {
    "small": Size(keys=1_000, users=10, models=100),
    "large": Size(keys=100_000, users=5_000, models=10_000),
    "admin": Size(keys=100_000, users=5_000, models=2_000),
}
TARGETS = {
    "change_ms": 100.0,
    "accept_same_ms": 50.0,
    "accept_other_ms": 1000.0,
    "p99_ratio": 1.5,
    "stall_ms": 10.0,
    "bytes_per_key": 400.0,
    "bytes_per_model": 3072.0,
}


def say(text: str) -> None:
    print(text, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summary(values: list[float]) -> dict[str, Any]:
    """Median, p99 (nearest rank) and max of ``values`` (seconds), in ms; empty: n = 0."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    rank = max(0, math.ceil(0.99 * len(ordered)) - 1)
    return {
        "n": len(ordered),
        "median_ms": ms(statistics.median(ordered)),
        "p99_ms": ms(ordered[rank]),
        "max_ms": ms(ordered[-1]),
    }


# --- the database -------------------------------------------------------------------------


class Database:
    """A fresh database of one kind: a SQLite file in ``work``, or a PostgreSQL database
    created on the server (dropped by :meth:`drop`). Seeds rows in bulk, straight in SQL."""

    def __init__(self, kind: str, work: pathlib.Path):
        self.kind = kind
        if kind == "sqlite":
            self.path = work / "relaygate.db"
            self.url = f"sqlite:///{self.path}"
        else:
            name = "rg_bench_" + secrets.token_hex(6)
            asyncio.run(self._server(f'CREATE DATABASE "{name}"'))
            self.url = POSTGRES_SERVER.rpartition("/")[0] + "/" + name
        self.now: Any = (
            "2026-01-01 00:00:00.000000" if kind == "sqlite" else datetime(2026, 1, 1, tzinfo=UTC)
        )

    @staticmethod
    async def _server(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_SERVER)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.kind == "sqlite":
            connection = sqlite3.connect(self.path, timeout=30)
            with connection:
                marks = ", ".join("?" for _ in columns)
                connection.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
            connection.close()
            return

        async def copy() -> None:
            connection = await asyncpg.connect(self.url)
            try:
                await connection.copy_records_to_table(table, records=rows, columns=columns)
            finally:
                await connection.close()

        asyncio.run(copy())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            connection = sqlite3.connect(self.path, timeout=30)
            try:
                return connection.execute(sql).fetchall()
            finally:
                connection.close()

        async def fetch() -> list[tuple[Any, ...]]:
            connection = await asyncpg.connect(self.url)
            try:
                return [tuple(row) for row in await connection.fetch(sql)]
            finally:
                await connection.close()

        return asyncio.run(fetch())

    def drop(self) -> None:
        if self.kind == "postgresql":
            name = self.url.rpartition("/")[2]
            asyncio.run(self._server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class World:
    """What was seeded, by id: what the change driver picks from."""

    users: list[int]
    groups: list[int]
    bench_user: int
    bench_group: int
    bench_key: str
    json_endpoint: int = 0
    catalogue_endpoint: int = 0
    catalogue_models: list[int] = field(default_factory=list)
    model_grants: set[tuple[int, int]] = field(default_factory=set)
    endpoint_grants: set[tuple[int, int]] = field(default_factory=set)
    revocable: list[int] = field(default_factory=list)
    """Seeded keys (not the bench's), shuffled: the revocations pop from it."""
    listings: tuple[list[str], list[str]] = ([], [])
    listing_file: pathlib.Path | None = None
    listing: int = 0


def seed_people(db: Database, users: int, rng: random.Random) -> World:
    """Groups, users, memberships and the bench user with its key (before any start)."""
    now = db.now
    db.insert(
        "groups",
        ("name", "description", "builtin", "created_at"),
        [(f"g{n:02d}", None, False, now) for n in range(GROUPS)]
        + [("bench", "the benchmark's own user", False, now)],
    )
    group_ids = {name: id_ for id_, name in db.query("SELECT id, name FROM groups")}
    db.insert(
        "users",
        ("name", "role", "requests_per_minute", "tokens_per_minute", "created_at", "updated_at"),
        [(f"u{n:05d}", "user", None, None, now, now) for n in range(users)]
        # Limits high enough never to refuse, so the rate-limit path is on (as compare.py).
        + [("bench", "user", 10**9, 2**31 - 1, now, now)],
    )
    user_ids = {name: id_ for id_, name in db.query("SELECT id, name FROM users")}
    seeded_groups = [group_ids[f"g{n:02d}"] for n in range(GROUPS)]
    seeded_users = [user_ids[f"u{n:05d}"] for n in range(users)]
    members = {
        (group, user)
        for user in seeded_users
        for group in rng.sample(seeded_groups, rng.randint(1, 3))
    }
    bench_user, bench_group = user_ids["bench"], group_ids["bench"]
    members |= {(bench_group, bench_user), (group_ids["g01"], bench_user)}
    db.insert("group_members", ("group_id", "user_id"), sorted(members))
    key = generate_key()
    db.insert(
        "api_keys",
        (
            "name",
            "user_id",
            "prefix",
            "key_hash",
            "created_at",
            "requests_per_minute",
            "tokens_per_minute",
        ),
        [("bench", bench_user, display_prefix(key), hash_key(key), now, 10**9, 2**31 - 1)],
    )
    return World(seeded_users, seeded_groups, bench_user, bench_group, key)


def seed_access(
    db: Database, world: World, keys: int, rng: random.Random, bench_sees_catalogue: bool
) -> None:
    """Grants by model id and by endpoint, and ``keys`` keys over the seeded users (after
    the endpoints were created and synced, with no process running)."""
    models = db.query("SELECT id, upstream_id, endpoint_id FROM models")
    json_model = next(id_ for id_, upstream, _ in models if upstream == "bench-json")
    world.catalogue_models = sorted(id_ for id_, _, e in models if e == world.catalogue_endpoint)
    per_group = min(len(world.catalogue_models), max(2, 2 * len(world.catalogue_models) // GROUPS))
    world.model_grants = {
        (group, model)
        for group in world.groups
        for model in rng.sample(world.catalogue_models, per_group)
    }
    world.endpoint_grants = {(g, world.catalogue_endpoint) for g in world.groups[::10]}
    db.insert(
        "group_models",
        ("group_id", "model_id"),
        sorted(world.model_grants | {(world.bench_group, json_model)}),
    )
    endpoint_grants = set(world.endpoint_grants)
    if bench_sees_catalogue:
        endpoint_grants.add((world.bench_group, world.catalogue_endpoint))
    db.insert("group_endpoints", ("group_id", "endpoint_id"), sorted(endpoint_grants))
    if keys:
        if not world.users:
            raise ValueError("keys need users to belong to")
        now = db.now
        chunk = 20_000
        for start in range(0, keys, chunk):
            db.insert(
                "api_keys",
                ("name", "user_id", "prefix", "key_hash", "created_at"),
                [
                    (
                        f"seed-{n}",
                        world.users[n % len(world.users)],
                        "rg-" + secrets.token_urlsafe(6)[:6],
                        hashlib.sha256(secrets.token_bytes(24)).hexdigest(),
                        now,
                    )
                    for n in range(start, min(keys, start + chunk))
                ],
            )
        world.revocable = [
            id_ for (id_,) in db.query("SELECT id FROM api_keys WHERE name LIKE 'seed-%'")
        ]
        rng.shuffle(world.revocable)


# --- relaygate processes ------------------------------------------------------------------


def relaygate_env(db: Database) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
    env.update(
        RELAYGATE_DATABASE_URL=db.url,
        RELAYGATE_ADMIN_KEY=ADMIN_KEY,
        RELAYGATE_SECRET_KEY=SECRET_KEY,
        RELAYGATE_LOG_LEVEL="warning",
        RELAYGATE_SYNC_INTERVAL=str(LONG_SYNC_INTERVAL),
        # Small sizes hold 100 keys a user, the default most; creations must not be refused.
        RELAYGATE_MAX_KEYS_PER_USER="1000000",
    )
    return env


class Replica:
    """``relaygate serve`` on a free port, in a directory of its own, logging to a file."""

    def __init__(self, work: pathlib.Path, env: dict[str, str], name: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = work / f"relaygate-{name}-{self.port}"
        home.mkdir()
        self.log = home / "serve.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relaygate", "serve", "--port", str(self.port)],
                cwd=home,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 900) -> Replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"relaygate {self.name} exited early:\n{tail}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"relaygate {self.name} not ready within {timeout:.0f} s")

    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)  # drain_timeout is 30 s
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def admin_client(replica: Replica, timeout: float = CALL_TIMEOUT) -> httpx.Client:
    return httpx.Client(
        base_url=replica.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=timeout
    )


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def write_listing(path: pathlib.Path, names: list[str]) -> None:
    """Replace the file nginx lists models from, atomically (nginx opens it per request)."""
    scratch = path.with_suffix(".new")
    scratch.write_bytes(models_body(names))
    scratch.chmod(0o644)
    os.replace(scratch, path)


def prepare(
    work: pathlib.Path,
    db: Database,
    nginx: Nginx,
    *,
    users: int,
    keys: int,
    catalogue: list[str],
    rng: random.Random,
    bench_sees_catalogue: bool = False,
) -> World:
    """Migrate and seed the database: people first; then one relaygate process creates
    the two endpoints through the admin API (each synced at once) and stops; then grants
    and keys. The measured processes start afterwards, on the whole database."""
    started = time.monotonic()
    env = relaygate_env(db)
    subprocess.run(
        [sys.executable, "-m", "relaygate", "db", "upgrade"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    world = seed_people(db, users, rng)
    setup = Replica(work, env, "setup")
    try:
        setup.wait_ready()
        with admin_client(setup, timeout=300) as admin:
            for name, stream in (("json", False), ("catalogue", True)):
                endpoint = call(
                    admin,
                    "POST",
                    "/admin/api/v1/endpoints",
                    json={
                        "name": name,
                        "url": nginx.base(stream),
                        "api_key": "sk-upstream-bench",
                        "groups": [],
                        "sync_interval": LONG_SYNC_INTERVAL,
                    },
                )
                if (endpoint.get("sync") or {}).get("status") != "ok":
                    raise RuntimeError(f"endpoint {name} did not sync: {endpoint}")
                if stream:
                    world.catalogue_endpoint = endpoint["id"]
                else:
                    world.json_endpoint = endpoint["id"]
    finally:
        setup.stop()
    seed_access(db, world, keys, rng, bench_sees_catalogue)
    world.listing_file = nginx.dir / "stream-models.json"
    world.listings = (catalogue, alternate(catalogue))
    counted = db.query("SELECT (SELECT count(*) FROM api_keys), (SELECT count(*) FROM models)")
    say(
        f"  seeded {counted[0][0]:,} keys, {users:,} users, {counted[0][1]:,} models "
        f"in {time.monotonic() - started:.1f} s"
    )
    return world


def catalogue_names(count: int) -> list[str]:
    return [f"cat-{n:05d}" for n in range(count)]


def alternate(names: list[str]) -> list[str]:
    """The other listing: the same less its last tenth, which is replaced by new names."""
    changed = max(1, len(names) // 10)
    return names[:-changed] + [f"cat-b-{n:05d}" for n in range(changed)]


def start_replicas(setting: Setting, count: int) -> list[Replica]:
    """Start ``count`` replicas on the setting's database (held by the setting as they
    start, so that :meth:`Setting.close` stops them whatever happens) and wait for each."""
    assert setting.db is not None
    started = time.monotonic()
    env = relaygate_env(setting.db)
    for n in range(count):
        setting.replicas.append(Replica(setting.dir, env, "AB"[n]))
    for replica in setting.replicas:
        replica.wait_ready()
    say(f"  {count} replica(s) ready in {time.monotonic() - started:.1f} s")
    return setting.replicas


def mem_available_mb() -> float:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return math.inf


class MemoryGuard:
    """Samples the replicas' RSS (their peak is reported) and, should the machine's
    available memory fall below MIN_AVAILABLE_MB, kills them at once: on a shared machine
    the bench gives up a configuration rather than let the OOM killer pick a process."""

    def __init__(self, replicas: list[Replica]):
        self.replicas = replicas
        self.peak_mb: dict[str, float] = {}
        self.tripped: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            running = [r for r in list(self.replicas) if r.process.poll() is None]
            for replica in running:
                rss = replica.rss()
                self.peak_mb[replica.name] = max(self.peak_mb.get(replica.name, 0.0), rss)
            available = mem_available_mb()
            if running and self.tripped is None and available < MIN_AVAILABLE_MB:
                self.tripped = (
                    f"stopped: the machine had {available:,.0f} MB available, below "
                    f"{MIN_AVAILABLE_MB:,} MB (replicas' peak RSS {self.peak_text()})"
                )
                say(f"  {self.tripped}")
            if self.tripped:  # and any replica started after it, too
                for replica in running:
                    replica.process.kill()

    def peak_text(self) -> str:
        return ", ".join(f"{name} {mb:,.0f} MB" for name, mb in self.peak_mb.items()) or "none"

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


# --- /metrics -----------------------------------------------------------------------------


def scrape(replica: Replica) -> dict[str, Any]:
    """The loop-lag histogram's cumulative buckets (None when not exported) and the
    snapshot version, from ``/metrics``."""
    try:
        text = httpx.get(replica.url + "/metrics", timeout=30).text
    except httpx.HTTPError as exc:
        return {"lag": None, "version": None, "error": type(exc).__name__}
    buckets: dict[float, float] = {}
    version = None
    for line in text.splitlines():
        if line.startswith(LAG_METRIC + "_bucket{"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
                buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("relaygate_snapshot_version "):
            version = float(line.split()[1])
    return {"lag": buckets or None, "version": version}


def bound_text(bound: float) -> str:
    if bound == math.inf:
        return "> 5 s"
    return f"{bound * 1000:g} ms" if bound < 1 else f"{bound:g} s"


def lag_window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """Loop-lag samples that arrived between two scrapes: per bucket, over 10 ms, and the
    upper bound of the highest bucket reached. None when the metric is not exported."""
    if before.get("lag") is None or after.get("lag") is None:
        return None
    bounds = sorted(after["lag"])
    cumulative = [after["lag"][b] - before["lag"].get(b, 0.0) for b in bounds]
    total = cumulative[-1]
    per_bucket = {
        per_bucket_label(b): int(c - (cumulative[i - 1] if i else 0))
        for i, (b, c) in enumerate(zip(bounds, cumulative, strict=True))
    }
    at_10ms = next((c for b, c in zip(bounds, cumulative, strict=True) if b >= 0.01), 0.0)
    highest = next((b for b, c in zip(bounds, cumulative, strict=True) if c >= total), None)
    return {
        "samples": int(total),
        "per_bucket": per_bucket,
        "over_10ms": int(total - at_10ms),
        "highest_bucket": bound_text(highest) if total and highest is not None else "none",
        "highest_bucket_le": None if not total or highest is None else per_bucket_label(highest),
    }


def per_bucket_label(bound: float) -> str:
    return "+Inf" if bound == math.inf else f"{bound:g}"


def settle(replicas: list[Replica], timeout: float = 300) -> None:
    """Wait until every replica holds the same snapshot version, unchanged, and answers
    /healthz promptly for 2 s in a row: no rebuild left over from earlier changes."""
    deadline = time.monotonic() + timeout
    last: list[Any] = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        versions = [scrape(r)["version"] for r in replicas]
        slow = False
        for replica in replicas:
            started = time.monotonic()
            try:
                httpx.get(replica.url + "/healthz", timeout=30)
            except httpx.HTTPError:
                slow = True
            slow = slow or time.monotonic() - started > 0.1
        if slow or versions != last or len(set(versions)) > 1:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 2:
            return
        last = versions
        time.sleep(0.2)
    say(f"  (replicas still busy after {timeout:.0f} s; going on)")


# --- 1. a new key accepted ----------------------------------------------------------------


def poll_accepted(client: httpx.Client, key: str, since: float) -> float | None:
    """Seconds from ``since`` until ``GET /v1/models`` with ``key`` answers 200 (None:
    not within ACCEPT_TIMEOUT)."""
    headers = {"authorization": f"Bearer {key}"}
    while True:
        try:
            if client.get("/v1/models", headers=headers).status_code == 200:
                return time.perf_counter() - since
        except httpx.HTTPError:
            pass
        if time.perf_counter() - since > ACCEPT_TIMEOUT:
            return None
        time.sleep(0.0015)


def key_acceptance(replicas: list[Replica], world: World, rounds: int) -> dict[str, Any]:
    """Create a key on each replica in turn; time from the answer until each accepts it."""
    admins = [admin_client(r, timeout=ADMIN_TIMEOUT) for r in replicas]
    pollers = [httpx.Client(base_url=r.url, timeout=10) for r in replicas]
    answers: list[float] = []
    same: list[float] = []
    other: list[float] = []
    timeouts = {"answer": 0, "same": 0, "other": 0}
    errors: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(len(replicas)) as pool:
            for n in range(rounds):
                creator = n % len(replicas)
                started = time.perf_counter()
                try:
                    created = call(
                        admins[creator],
                        "POST",
                        "/admin/api/v1/keys",
                        json={"user_id": world.bench_user, "name": f"accept-{n}"},
                    )
                except httpx.TimeoutException:
                    timeouts["answer"] += 1
                    say(f"    key {n + 1}: creation timed out")
                    continue
                except (httpx.HTTPError, RuntimeError) as exc:  # counted; the next round goes on
                    errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    say(
                        f"    key {n + 1}: creation failed after "
                        f"{ms(time.perf_counter() - started):.1f} ms: {type(exc).__name__}: {exc}"
                    )
                    time.sleep(1)
                    continue
                answered = time.perf_counter()
                answers.append(answered - started)
                futures = [
                    pool.submit(poll_accepted, poller, created["key"], answered)
                    for poller in pollers
                ]
                seen = [future.result() for future in futures]
                line = f"    key {n + 1:2}: answered in {ms(answered - started):8.1f} ms"
                for index, elapsed in enumerate(seen):
                    kind = "same" if index == creator else "other"
                    if elapsed is None:
                        timeouts[kind] += 1
                    else:
                        (same if kind == "same" else other).append(elapsed)
                    shown = "timeout" if elapsed is None else f"{ms(elapsed):8.1f} ms"
                    line += f", accepted on {kind} replica after {shown}"
                say(line)
                time.sleep(0.2)
    finally:
        for client in admins + pollers:
            client.close()
    result = {
        "answer": summary(answers),
        "same_replica": summary(same),
        "other_replica": summary(other) if len(replicas) > 1 else None,
        "timeouts": timeouts,
        "creation_errors": dict(errors),
    }
    say(
        f"  new key accepted: same replica {fmt_stat(result['same_replica'])}"
        + (f", other replica {fmt_stat(result['other_replica'])}" if len(replicas) > 1 else "")
        + f" (creation answered {fmt_stat(result['answer'])})"
    )
    return result


def fmt_stat(stat: dict[str, Any] | None, p99: bool = False) -> str:
    if not stat or not stat.get("n"):
        return "none"
    middle = f" / p99 {stat['p99_ms']:.1f}" if p99 else ""
    return f"median {stat['median_ms']:.1f}{middle} / max {stat['max_ms']:.1f} ms"


# --- 2. the change driver -----------------------------------------------------------------


class Changes:
    """Configuration changes at CHANGE_RATE a second, open loop, spread over the replicas:
    key creations, key revocations and group grant changes in turn (every fourth grant
    change a whole endpoint's). A change falling due while MAX_IN_FLIGHT are outstanding
    is skipped and counted; each call times out after CALL_TIMEOUT. A sync of the
    catalogue endpoint runs every SYNC_EVERY seconds, after its listing was switched."""

    KINDS = ("create", "grant", "revoke")

    def __init__(self, replicas: list[Replica], world: World, rng: random.Random):
        self.replicas = replicas
        self.world = world
        self.rng = rng
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(MAX_IN_FLIGHT)
        self.local = threading.local()
        self.clients: list[httpx.Client] = []
        self.in_flight = 0
        self.submitted = 0
        self.skipped = 0
        self.grants = 0
        self.outcomes: list[dict[str, Any]] = []
        self.syncs: list[dict[str, Any]] = []
        self.started = 0.0
        self.stopped = 0.0
        self.threads = [
            threading.Thread(target=self._schedule, daemon=True),
            threading.Thread(target=self._sync_loop, daemon=True),
        ]

    def client(self, replica: int) -> httpx.Client:
        clients = getattr(self.local, "clients", None)
        if clients is None:
            clients = self.local.clients = {}
        if replica not in clients:
            clients[replica] = admin_client(self.replicas[replica])
            with self.lock:
                self.clients.append(clients[replica])
        return clients[replica]

    def start(self) -> None:
        self.started = time.perf_counter()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop scheduling, then wait for the changes in flight (each ends or times out)."""
        self.stopped = time.perf_counter()
        self.stopping.set()
        for thread in self.threads:
            thread.join(SYNC_TIMEOUT + 10)
        self.pool.shutdown(wait=True)
        for client in self.clients:
            client.close()

    def _schedule(self) -> None:
        n = 0
        while True:
            due = self.started + n / CHANGE_RATE
            if self.stopping.wait(max(0.0, due - time.perf_counter())):
                return
            with self.lock:
                busy = self.in_flight >= MAX_IN_FLIGHT
                if not busy:
                    self.in_flight += 1
                    self.submitted += 1
            if busy:
                self.skipped += 1
            else:
                self.pool.submit(self._change, n)
            n += 1

    def _pick(self, kind: str, n: int) -> tuple[str, str, dict[str, Any] | None]:
        world = self.world
        with self.lock:
            if kind == "create":
                user = self.rng.choice(world.users)
                return "POST", "/admin/api/v1/keys", {"user_id": user, "name": f"change-{n}"}
            if kind == "revoke":
                return "DELETE", f"/admin/api/v1/keys/{world.revocable.pop()}", None
            self.grants += 1
            group = self.rng.choice(world.groups)
            if self.grants % 4 == 0:
                grants, pair, what = (
                    world.endpoint_grants,
                    (group, world.catalogue_endpoint),
                    "endpoints",
                )
            else:
                model = self.rng.choice(world.catalogue_models)
                grants, pair, what = world.model_grants, (group, model), "models"
            method = "DELETE" if pair in grants else "PUT"
            grants.symmetric_difference_update({pair})  # the state once this call is done
            return method, f"/admin/api/v1/groups/{group}/{what}/{pair[1]}", None

    def _change(self, n: int) -> None:
        kind = self.KINDS[n % len(self.KINDS)]
        replica = n % len(self.replicas)
        at = time.perf_counter()
        try:
            method, path, body = self._pick(kind, n)
            response = self.client(replica).request(method, path, json=body)
            status = "ok" if response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.TimeoutException:
            status = "timeout"
        except Exception as exc:  # counted, never raised: the window goes on
            status = f"error {type(exc).__name__}"
        done = time.perf_counter()
        with self.lock:
            self.in_flight -= 1
            self.outcomes.append(
                {
                    "kind": kind,
                    "replica": replica,
                    "at_s": round(at - self.started, 3),
                    "seconds": done - at,
                    "status": status,
                }
            )

    def _sync_loop(self) -> None:
        world = self.world
        due = self.started + min(5.0, SYNC_EVERY / 4)
        n = 0
        while not self.stopping.wait(max(0.0, due - time.perf_counter())):
            assert world.listing_file is not None
            world.listing = 1 - world.listing
            write_listing(world.listing_file, world.listings[world.listing])
            replica = n % len(self.replicas)
            at = time.perf_counter()
            entry: dict[str, Any] = {"replica": replica, "at_s": round(at - self.started, 3)}
            try:
                response = self.client(replica).post(
                    f"/admin/api/v1/endpoints/{world.catalogue_endpoint}/sync",
                    timeout=SYNC_TIMEOUT,
                )
                entry["status"] = (
                    "ok" if response.status_code < 300 else (f"HTTP {response.status_code}")
                )
                if response.status_code < 300:
                    body = response.json()
                    entry.update(
                        {k: body.get(k) for k in ("added", "reactivated", "deactivated", "total")}
                    )
                    if body.get("status") != "ok":
                        entry["status"] = f"sync {body.get('status')}: {body.get('error')}"
            except httpx.TimeoutException:
                entry["status"] = "timeout"
            except Exception as exc:
                entry["status"] = f"error {type(exc).__name__}"
            entry["answer_ms"] = ms(time.perf_counter() - at)
            self.syncs.append(entry)
            n += 1
            due += SYNC_EVERY

    def report(self) -> dict[str, Any]:
        window = (self.stopped or time.perf_counter()) - self.started
        ok = [o["seconds"] for o in self.outcomes if o["status"] == "ok"]
        statuses = Counter(o["status"] for o in self.outcomes)
        return {
            "window_s": round(window, 2),
            "rate_asked_per_s": CHANGE_RATE,
            "submitted": self.submitted,
            "skipped_in_flight": self.skipped,
            "ok": len(ok),
            "timeouts": statuses.get("timeout", 0),
            "statuses": dict(statuses),
            "achieved_per_s": round(len(ok) / window, 2) if window else 0.0,
            "answer": summary(ok),
            "by_kind": {
                kind: summary(
                    [
                        o["seconds"]
                        for o in self.outcomes
                        if o["kind"] == kind and o["status"] == "ok"
                    ]
                )
                for kind in self.KINDS
            },
            "syncs": self.syncs,
        }


def traffic(
    work: pathlib.Path,
    replicas: list[Replica],
    world: World,
    duration: float,
    rng: random.Random,
    changing: bool,
) -> dict[str, Any]:
    """One wrk window (JSON chat completions at c=16 on the first replica), with or
    without the change driver, and the loop-lag samples of every replica over it."""
    gateway = Gateway(
        "relaygate",
        replicas[0].url + "/v1/chat/completions",
        replicas[0].url + "/v1/chat/completions",
        {"json": {"Authorization": f"Bearer {world.bench_key}"}},
    )
    body = request_body(False)
    check(gateway, False, body)
    before = [scrape(r) for r in replicas]
    driver = Changes(replicas, world, rng) if changing else None
    if driver:
        driver.start()
    try:
        point = wrk(work, gateway, False, CONNECTIONS, duration, body)
    finally:
        if driver:
            driver.stop()
    after = [scrape(r) for r in replicas]
    entry: dict[str, Any] = {
        "wrk": point,
        "lag": [lag_window(b, a) for b, a in zip(before, after, strict=True)],
        "snapshot_versions": [
            [b["version"], a["version"]] for b, a in zip(before, after, strict=True)
        ],
    }
    label = "with changes" if changing else "no changes  "
    say(
        f"  {label}: {point['rps']:8,.0f} req/s  p50 {point['p50_ms']:7.2f} ms  "
        f"p99 {point['p99_ms']:8.2f} ms  non-2xx {point['non_2xx']} {point['socket_errors']}"
    )
    for replica, lag in zip(replicas, entry["lag"], strict=True):
        if lag is None:
            say(f"    loop lag on {replica.name}: n/a ({LAG_METRIC} not exported)")
        else:
            say(
                f"    loop lag on {replica.name}: {lag['samples']} samples, "
                f"{lag['over_10ms']} over 10 ms, highest bucket {lag['highest_bucket']}"
            )
    if driver:
        report = entry["changes"] = driver.report()
        say(
            f"    changes: {report['achieved_per_s']:.1f}/s done of {CHANGE_RATE:g}/s asked "
            f"({report['ok']} ok, {report['timeouts']} timed out, "
            f"{report['skipped_in_flight']} skipped with {MAX_IN_FLIGHT} in flight; "
            f"{report['statuses']}), answered {fmt_stat(report['answer'], p99=True)}"
        )
        for kind, stat in report["by_kind"].items():
            say(f"      {kind:7} {fmt_stat(stat, p99=True)}")
        for sync in report["syncs"]:
            say(
                f"    sync at {sync['at_s']:.1f} s: {sync['status']}, answered in "
                f"{sync['answer_ms']:.0f} ms (added {sync.get('added')}, reactivated "
                f"{sync.get('reactivated')}, deactivated {sync.get('deactivated')})"
            )
    return entry


# --- the scenarios ------------------------------------------------------------------------


class Setting:
    """One configuration's working directory, nginx, database and replicas, all stopped
    and dropped by :meth:`close` whatever happened."""

    def __init__(self, work: pathlib.Path, label: str, store: str, catalogue: list[str]):
        self.dir = work / label.replace("/", "-")
        self.dir.mkdir()
        self.dir.chmod(0o755)  # nginx's workers may run as another user
        self.replicas: list[Replica] = []
        self.guard = MemoryGuard(self.replicas)
        self.nginx: Nginx | None = Nginx(self.dir, ["bench-json"], catalogue)
        self.db: Database | None = None
        try:
            self.db = Database(store, self.dir)
        except BaseException:
            self.guard.stop()
            self.nginx.stop()
            raise

    def close(self) -> None:
        self.guard.stop()
        for replica in self.replicas:
            try:
                replica.stop()
            except Exception as exc:
                say(f"  could not stop relaygate {replica.name}: {exc}")
        if self.nginx is not None:
            self.nginx.stop()
        if self.db is not None:
            self.db.drop()


def run_config(
    work: pathlib.Path, size_name: str, store: str, args: argparse.Namespace
) -> dict[str, Any]:
    size = SIZES[size_name]
    rng = random.Random(f"{size_name}-{store}")
    entry: dict[str, Any] = {"size": size_name, "store": store, **size.__dict__}
    catalogue = catalogue_names(size.models - 1)  # plus bench-json on the other endpoint
    setting = None
    try:
        setting = Setting(work, f"{size_name}-{store}", store, catalogue)
        assert setting.db and setting.nginx
        world = prepare(
            setting.dir,
            setting.db,
            setting.nginx,
            users=size.users,
            keys=size.keys,
            catalogue=catalogue,
            rng=rng,
        )
        start_replicas(setting, 2 if store == "postgresql" else 1)
        replicas = setting.replicas
        entry["rss_mb"] = [r.rss() for r in replicas]
        phases: list[tuple[str, Any]] = [
            ("accept", lambda: key_acceptance(replicas, world, args.rounds)),
            ("steady", lambda: traffic(setting.dir, replicas, world, args.duration, rng, False)),
            ("changing", lambda: traffic(setting.dir, replicas, world, args.duration, rng, True)),
        ]
        for name, measure in phases:
            try:  # a phase that fails is reported, and the next one still runs
                settle(replicas)
                entry[name] = measure()
            except Exception as exc:
                entry.setdefault("phase_failures", {})[name] = f"{type(exc).__name__}: {exc}"
                say(f"  {name} failed: {type(exc).__name__}: {exc}")
        if "steady" in entry and "changing" in entry:
            entry["p99_ratio"] = round(
                entry["changing"]["wrk"]["p99_ms"] / entry["steady"]["wrk"]["p99_ms"], 2
            )
            say(f"  p99 with changes / without: {entry['p99_ratio']:.2f}x")
    except Exception as exc:  # reported, never silently dropped; the next one goes on
        entry["failure"] = f"{type(exc).__name__}: {exc}"
        say(f"  failed: {entry['failure']}")
    finally:
        if setting is not None:
            setting.close()
            guarded(entry, setting)
    return entry


def guarded(entry: dict[str, Any], setting: Setting) -> None:
    """The replicas' peak RSS into ``entry``, and the memory guard's stop as its failure."""
    entry["peak_rss_mb"] = {name: round(mb, 1) for name, mb in setting.guard.peak_mb.items()}
    if setting.guard.tripped:
        entry["failure"] = setting.guard.tripped


def run_admin(work: pathlib.Path, store: str, args: argparse.Namespace) -> dict[str, Any]:
    """One admin change at a time on a quiet system: its answer time."""
    size = SIZES["admin"]
    rng = random.Random(f"admin-{store}")
    entry: dict[str, Any] = {"store": store, **size.__dict__}
    catalogue = catalogue_names(size.models - 1)
    setting = None
    times: dict[str, list[float]] = {"grant": [], "create": [], "revoke": []}
    by_grant: dict[str, list[float]] = {"model": [], "endpoint": []}
    failures: Counter[str] = Counter()
    try:
        setting = Setting(work, f"admin-{store}", store, catalogue)
        assert setting.db and setting.nginx
        world = prepare(
            setting.dir,
            setting.db,
            setting.nginx,
            users=size.users,
            keys=size.keys,
            catalogue=catalogue,
            rng=rng,
        )
        start_replicas(setting, 2 if store == "postgresql" else 1)
        replicas = setting.replicas
        clients = [admin_client(r, timeout=ADMIN_TIMEOUT) for r in replicas]
        try:
            for n in range(args.rounds):
                replica = n % len(replicas)
                group = rng.choice(world.groups)
                if n % 2 == 0:
                    model = rng.choice(
                        [m for m in world.catalogue_models if (group, m) not in world.model_grants]
                    )
                    world.model_grants.add((group, model))
                    grant = ("model", f"/admin/api/v1/groups/{group}/models/{model}")
                else:
                    free = [
                        g
                        for g in world.groups
                        if (g, world.catalogue_endpoint) not in world.endpoint_grants
                    ]
                    group = rng.choice(free)
                    world.endpoint_grants.add((group, world.catalogue_endpoint))
                    grant = (
                        "endpoint",
                        f"/admin/api/v1/groups/{group}/endpoints/{world.catalogue_endpoint}",
                    )
                steps = (
                    ("grant", "PUT", grant[1], None),
                    (
                        "create",
                        "POST",
                        "/admin/api/v1/keys",
                        {"user_id": rng.choice(world.users), "name": f"admin-{n}"},
                    ),
                    ("revoke", "DELETE", f"/admin/api/v1/keys/{world.revocable.pop()}", None),
                )
                line = f"    round {n + 1:2} on {replicas[replica].name}:"
                for kind, method, path, body in steps:
                    settle(replicas, timeout=120)
                    started = time.perf_counter()
                    try:
                        response = clients[replica].request(method, path, json=body)
                        status = f"HTTP {response.status_code}"
                        ok = response.status_code < 300
                    except httpx.TimeoutException:
                        status, ok = "timeout", False
                    except httpx.HTTPError as exc:
                        status, ok = type(exc).__name__, False
                    elapsed = time.perf_counter() - started
                    if ok:
                        times[kind].append(elapsed)
                        if kind == "grant":
                            by_grant[grant[0]].append(elapsed)
                        line += f" {kind} {ms(elapsed):8.1f} ms"
                    else:
                        failures[f"{kind} {status}"] += 1
                        line += f" {kind} {status} after {ms(elapsed):.0f} ms"
                say(line)
        finally:
            for client in clients:
                client.close()
    except Exception as exc:
        entry["failure"] = f"{type(exc).__name__}: {exc}"
        say(f"  failed: {entry['failure']}")
    finally:
        if setting is not None:
            setting.close()
            guarded(entry, setting)
    entry.update({kind: summary(values) for kind, values in times.items()})
    entry["grant_by_kind"] = {kind: summary(values) for kind, values in by_grant.items()}
    entry["failures"] = dict(failures)
    for kind in times:
        say(f"  {kind:7} answered {fmt_stat(entry[kind])} over {entry[kind]['n']}")
    return entry


def run_rss(work: pathlib.Path, store: str) -> dict[str, Any]:
    """RSS on an empty database, on 100,000 keys (10 models), on 10,000 models (1 key)."""
    runs = {
        "empty": {"users": 0, "keys": 0, "models": 10},
        "keys": {"users": 5_000, "keys": 100_000, "models": 10},
        "models": {"users": 0, "keys": 0, "models": 10_000},
    }
    entry: dict[str, Any] = {"store": store, "runs": {}}
    for name, run in runs.items():
        rng = random.Random(f"rss-{name}-{store}")
        catalogue = catalogue_names(run["models"] - 1)
        setting = None
        try:
            setting = Setting(work, f"rss-{name}-{store}", store, catalogue)
            assert setting.db and setting.nginx
            world = prepare(
                setting.dir,
                setting.db,
                setting.nginx,
                users=run["users"],
                keys=run["keys"],
                catalogue=catalogue,
                rng=rng,
                bench_sees_catalogue=True,
            )
            start_replicas(setting, 1)
            replica = setting.replicas[0]
            loaded = replica.rss()
            gateway = Gateway(
                "relaygate",
                replica.url + "/v1/chat/completions",
                replica.url + "/v1/chat/completions",
                {"json": {"Authorization": f"Bearer {world.bench_key}"}},
            )
            body = request_body(False)
            with httpx.Client(base_url=replica.url, timeout=30) as client:
                auth = {"authorization": f"Bearer {world.bench_key}"}
                for n in range(RSS_REQUESTS):
                    if n % 10 == 0:
                        client.get("/v1/models", headers=auth).raise_for_status()
                    else:
                        check(gateway, False, body)
            served = replica.rss()
            entry["runs"][name] = {**run, "rss_loaded_mb": loaded, "rss_mb": served}
            say(
                f"  {name:6} ({run['keys']:>7,} keys, {run['models']:>6,} models): RSS "
                f"{loaded:7.1f} MB loaded, {served:7.1f} MB after {RSS_REQUESTS} requests"
            )
        except Exception as exc:
            entry["runs"][name] = {**run, "failure": f"{type(exc).__name__}: {exc}"}
            say(f"  {name}: failed: {exc}")
        finally:
            if setting is not None:
                setting.close()
    measured = entry["runs"]
    mib = 1024 * 1024
    if all("rss_mb" in measured[n] for n in ("empty", "keys")):
        entry["bytes_per_key"] = round(
            (measured["keys"]["rss_mb"] - measured["empty"]["rss_mb"]) * mib / 100_000, 1
        )
        entry["bytes_per_key_loaded"] = round(
            (measured["keys"]["rss_loaded_mb"] - measured["empty"]["rss_loaded_mb"])
            * mib
            / 100_000,
            1,
        )
        say(f"  bytes per key (with its share of 5,000 users): {entry['bytes_per_key']:,.0f}")
    if all("rss_mb" in measured[n] for n in ("empty", "models")):
        count = runs["models"]["models"] - runs["empty"]["models"]
        entry["bytes_per_model"] = round(
            (measured["models"]["rss_mb"] - measured["empty"]["rss_mb"]) * mib / count, 1
        )
        entry["bytes_per_model_loaded"] = round(
            (measured["models"]["rss_loaded_mb"] - measured["empty"]["rss_loaded_mb"])
            * mib
            / count,
            1,
        )
        say(f"  bytes per model: {entry['bytes_per_model']:,.0f}")
    return entry


# --- the summary --------------------------------------------------------------------------


def mark(value: float | None, limit: float) -> str:
    return "" if value is None else (" ✓" if value <= limit else " ✗")


def stat_cell(stat: dict[str, Any] | None, limit: float | None = None, p99: bool = False) -> str:
    if not stat or not stat.get("n"):
        return "—"
    parts = [f"{stat['median_ms']:.1f}"]
    if p99:
        parts.append(f"{stat['p99_ms']:.1f}")
    parts.append(f"{stat['max_ms']:.1f} ms")
    return " / ".join(parts) + (mark(stat["max_ms"], limit) if limit is not None else "")


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Commit {results['commit']}, {results['date']}, {results['cpus']} CPUs."]
    configs = results.get("configs", {})
    if configs:
        names = list(configs)
        lines += [
            "",
            f"Changes at scale (wrk JSON c={CONNECTIONS}, {results['duration_s']:g} s "
            f"windows; {CHANGE_RATE:g} changes/s asked, at most {MAX_IN_FLIGHT} in flight):",
            "",
            "| | target | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]

        def row(label: str, target: str, cell: Any, always: bool = False) -> None:
            cells = []
            for name in names:
                entry = configs[name]
                try:
                    cells.append("failed" if "failure" in entry and not always else cell(entry))
                except (KeyError, TypeError, ZeroDivisionError):
                    cells.append("—")
            lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")

        row(
            "outcome",
            "—",
            lambda e: (
                e["failure"]
                if "failure" in e
                else "ran"
                + (f" ({', '.join(e['phase_failures'])} failed)" if e.get("phase_failures") else "")
            ),
            always=True,
        )
        row(
            "peak RSS per replica",
            "—",
            lambda e: ", ".join(f"{mb:,.0f} MB" for mb in e["peak_rss_mb"].values()) or "—",
            always=True,
        )

        def lag_cell(entry: dict[str, Any]) -> str:
            lags = entry["changing"]["lag"]
            if any(lag is None for lag in lags):
                return "n/a"
            over = sum(lag["over_10ms"] for lag in lags)
            reached = [float(lag["highest_bucket_le"]) for lag in lags if lag["highest_bucket_le"]]
            label = bound_text(max(reached)) if reached else "none"
            return f"{over} over 10 ms, highest bucket {label}" + (" ✓" if over == 0 else " ✗")

        def changes_cell(entry: dict[str, Any]) -> str:
            report = entry["changing"]["changes"]
            text = stat_cell(report["answer"], TARGETS["change_ms"], p99=True)
            if report["timeouts"]:
                text += f", {report['timeouts']} timed out ✗"
            return text

        row(
            "new key accepted, same replica (median / max)",
            f"≤ {TARGETS['accept_same_ms']:g} ms",
            lambda e: (
                stat_cell(e["accept"]["same_replica"], TARGETS["accept_same_ms"])
                + (" ✗ timeouts" if e["accept"]["timeouts"]["same"] else "")
            ),
        )
        row(
            "new key accepted, other replica (median / max)",
            f"≤ {TARGETS['accept_other_ms'] / 1000:g} s",
            lambda e: (
                stat_cell(e["accept"]["other_replica"], TARGETS["accept_other_ms"])
                + (" ✗ timeouts" if e["accept"]["timeouts"]["other"] else "")
            ),
        )
        row(
            "key creation answered, quiet (median / max)",
            f"≤ {TARGETS['change_ms']:g} ms",
            lambda e: stat_cell(e["accept"]["answer"], TARGETS["change_ms"]),
        )
        row(
            "change answered during traffic (median / p99 / max)",
            f"≤ {TARGETS['change_ms']:g} ms",
            changes_cell,
        )
        row(
            "changes done per second (asked 10)",
            "10",
            lambda e: (
                f"{e['changing']['changes']['achieved_per_s']:.1f} "
                f"({e['changing']['changes']['skipped_in_flight']} skipped)"
            ),
        )
        row(
            "sync of the big endpoint, answered",
            "—",
            lambda e: (
                ", ".join(
                    f"{s['answer_ms']:.0f} ms"
                    + ("" if s["status"] == "ok" else f" ({s['status']})")
                    for s in e["changing"]["changes"]["syncs"]
                )
                or "none ran"
            ),
        )
        row(
            "p99 no changes → with changes",
            "—",
            lambda e: (
                f"{e['steady']['wrk']['p99_ms']:.2f} → {e['changing']['wrk']['p99_ms']:.2f} ms"
            ),
        )
        row(
            "p99 ratio",
            f"≤ {TARGETS['p99_ratio']:g}x",
            lambda e: f"{e['p99_ratio']:.2f}x" + mark(e["p99_ratio"], TARGETS["p99_ratio"]),
        )
        row(
            "req/s no changes → with changes",
            "—",
            lambda e: f"{e['steady']['wrk']['rps']:,.0f} → {e['changing']['wrk']['rps']:,.0f}",
        )
        row("loop stalls during changes", "none over 10 ms", lag_cell)
    admin = results.get("admin", {})
    if admin:
        names = list(admin)
        lines += [
            "",
            "Admin API answer, one change at a time (100,000 keys, 5,000 users, 2,000 models; "
            "median / max):",
            "",
            "| | target | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for kind, label in (
            ("grant", "group grant (model or endpoint)"),
            ("create", "API key creation"),
            ("revoke", "API key revocation"),
        ):
            cells = [
                stat_cell(admin[n].get(kind), TARGETS["change_ms"])
                + (" (failed)" if "failure" in admin[n] else "")
                for n in names
            ]
            lines.append(f"| {label} | ≤ {TARGETS['change_ms']:g} ms | " + " | ".join(cells) + " |")
    rss = results.get("rss", {})
    if rss:
        lines += [
            "",
            "Memory (VmRSS after the snapshot loaded and 300 requests):",
            "",
            "| store | empty | 100,000 keys, 10 models | 10,000 models, 1 key "
            f"| bytes per key (≤ {TARGETS['bytes_per_key']:g}) "
            f"| bytes per model (≤ {TARGETS['bytes_per_model'] / 1024:g} KB) |",
            "|---|---|---|---|---|---|",
        ]
        for store, entry in rss.items():
            runs = entry["runs"]

            def mb(name: str, runs: dict[str, Any] = runs) -> str:
                return f"{runs[name]['rss_mb']:.1f} MB" if "rss_mb" in runs.get(name, {}) else "—"

            per_key = entry.get("bytes_per_key")
            per_model = entry.get("bytes_per_model")
            lines.append(
                f"| {store} | {mb('empty')} | {mb('keys')} | {mb('models')} | "
                + (f"{per_key:,.0f}{mark(per_key, TARGETS['bytes_per_key'])}" if per_key else "—")
                + " | "
                + (
                    f"{per_model:,.0f}{mark(per_model, TARGETS['bytes_per_model'])}"
                    if per_model
                    else "—"
                )
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per wrk window")
    parser.add_argument("--sizes", default="small,large", help="small, large or both")
    parser.add_argument("--store", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument(
        "--admin-only", action="store_true", help="only the admin API's answer times"
    )
    parser.add_argument("--rss-only", action="store_true", help="only bytes per key and model")
    parser.add_argument("--rounds", type=int, default=20, help="samples of each timed change")
    parser.add_argument("--out", default=str(OUT / "changes.json"))
    args = parser.parse_args()
    sizes = [s for s in args.sizes.split(",") if s]
    stores = [s for s in args.store.split(",") if s]
    for name in sizes:
        if name not in ("small", "large"):
            sys.exit(f"unknown size {name!r}: small or large")
    for name in stores:
        if name not in ("sqlite", "postgresql"):
            sys.exit(f"unknown store {name!r}: sqlite or postgresql")
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed; run bench/setup.sh")
    if "postgresql" in stores:
        try:
            asyncio.run(Database._server("SELECT 1"))
        except Exception as exc:
            sys.exit(
                f"PostgreSQL at {POSTGRES_SERVER} is unreachable ({exc}); set BENCH_POSTGRES_URL"
            )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-changes-"))
    work.chmod(0o755)  # nginx's workers may run as another user
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "configs": {},
        "admin": {},
        "rss": {},
    }

    def save() -> None:
        results["summary_markdown"] = markdown(results)
        out.write_text(json.dumps(results, indent=2, default=str))

    try:
        if args.admin_only:
            for store in stores:
                say(f"admin API, {store}:")
                results["admin"][store] = run_admin(work, store, args)
                save()
        elif args.rss_only:
            for store in stores:
                say(f"memory, {store}:")
                results["rss"][store] = run_rss(work, store)
                save()
        else:
            for size in sizes:
                for store in stores:
                    label = f"{size}/{store}"
                    say(f"{label}:")
                    results["configs"][label] = run_config(work, size, store, args)
                    save()
            for store in stores:
                say(f"memory, {store}:")
                results["rss"][store] = run_rss(work, store)
                save()
    finally:
        save()
    say("")
    say(markdown(results))
    say(f"\nresults: {out}  (work files: {work})")


if __name__ == "__main__":
    main()
