"""The runtime context: settings, database, vault, HTTP client, Redis client and snapshot.

Built once by :func:`open_context` — by the server's lifespan and by each CLI
command — and handed to the service functions. Nothing lives at module level.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from relaygate.audit import AuditTrail
from relaygate.budgets import Budgets
from relaygate.changes import TrackedSession
from relaygate.db.engine import make_engine, make_sessionmaker
from relaygate.db.migrate import upgrade
from relaygate.db.tables import Meta
from relaygate.errors import ConfigError, DecryptionFailed
from relaygate.extras import require
from relaygate.files.storage import FileStorage
from relaygate.health import Health
from relaygate.loader import Loader
from relaygate.metrics import Metrics
from relaygate.settings import Settings
from relaygate.snapshots import SnapshotStore
from relaygate.sso.provider import DiscoveryCache
from relaygate.targets import Timeouts
from relaygate.upstream_client import LeanClient
from relaygate.vault import CHECK_PLAINTEXT, Vault, load_secret

if TYPE_CHECKING:
    from redis.asyncio import Redis

SECRET_CHECK_KEY = "secret_check"
REDIS_CONNECTIONS = 256
"""Connections to Redis one process opens at most (rate limits and budgets share them)."""


@dataclass
class SyncLocks:
    """Per-process sync bookkeeping: one lock per endpoint, so this process never runs
    two syncs of one endpoint at once (other processes are kept off by the claim and
    by INSERT … ON CONFLICT DO NOTHING)."""

    locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    def lock(self, endpoint_id: int) -> asyncio.Lock:
        return self.locks.setdefault(endpoint_id, asyncio.Lock())


@dataclass
class Context:
    """Everything the services need; see :func:`open_context`."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: Vault
    http: aiohttp.ClientSession
    upstream: LeanClient
    """The proxy's client for forwarded requests (:mod:`relaygate.upstream_client`); ``http``
    serves everything else (syncs, probes, webhooks)."""
    snapshots: SnapshotStore
    sync_locks: SyncLocks
    health: Health
    """Which endpoints this process is cooling down after failures."""
    metrics: Metrics
    """The server's metrics (a CLI command's go nowhere)."""
    replica: str
    """This process, as host:pid, recorded on the syncs it runs."""
    redis: Redis | None = None
    """The client of ``redis_url`` (shared rate-limit counters), or None without one."""
    budgets: Budgets = field(init=False)
    """Budgets' reservations and spend (:mod:`relaygate.budgets`)."""
    clock: Callable[[], datetime] | None = None
    """The time budgets' periods are judged by (UTC); None: the system clock."""
    shared_budgets: bool = False
    """Whether other processes share this SQLite database's budgets (``--workers``)."""
    files: FileStorage = field(init=False)
    """The contents of users' files (``files_dir``)."""
    audit: AuditTrail = field(default_factory=AuditTrail)
    """Who is acting in the current task, for the audit log (:mod:`relaygate.audit`)."""
    discovery: DiscoveryCache = field(init=False)
    """The sign-in providers' discovery documents, kept a while (:mod:`relaygate.sso`)."""
    claimant: str = field(init=False)
    """This process as the holder of batch claims: ``replica`` and a random part, so two
    processes with one host name and pid (containers) never hold each other's claims."""

    def __post_init__(self) -> None:
        self.files = FileStorage(self.settings.files_path)
        self.discovery = DiscoveryCache(self.http)
        self.claimant = f"{self.replica}/{secrets.token_hex(4)}"
        self.budgets = Budgets(
            self.engine,
            self.settings,
            self.metrics,
            redis=self.redis,
            clock=self.clock,
            shared=self.shared_budgets,
        )


def make_http_client(settings: Settings, via: str = "") -> aiohttp.ClientSession:
    """The HTTP client for upstream calls off the proxy's hot path (syncs, probes,
    webhooks; forwarded requests go over :mod:`relaygate.upstream_client`); ``via``, this
    installation's mark, goes out in ``x-relaygate-via`` with every request. Its
    connections close after each request: those calls are rare, and an idle connection
    kept from a sync would outlive the endpoint's use (an endpoint counts relaygate's
    open connections, a stalled one must be seen closed)."""
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_max_connections,
        ttl_dns_cache=60,
        enable_cleanup_closed=True,
        force_close=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        # One client serves every user: a cookie an upstream set for one must never go
        # out with another's request (and a jar costs time on every request).
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"x-relaygate-via": via} if via else None,
        timeout=aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_idle_timeout,
        ),
    )


@asynccontextmanager
async def _upstream(settings: Settings) -> AsyncIterator[LeanClient]:
    """The proxy's client, its pool closed on the way out."""
    client = LeanClient(limit=settings.upstream_max_connections)
    try:
        yield client
    finally:
        await client.close()


def make_redis_client(settings: Settings) -> Redis | None:
    """The Redis client for ``settings.redis_url`` (None when unset). It connects on first
    use; connecting and each command time out after ``redis_timeout`` seconds, and a
    failed command is retried once at once (a connection the server dropped), no more:
    callers fail open rather than wait. Raises :class:`ConfigError` for a malformed URL."""
    if settings.redis_url is None:
        return None
    # Imported here: an optional dependency (the ``redis`` extra).
    require("redis", "redis", "redis_url")
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        # A blocking pool: past REDIS_CONNECTIONS in use, a call waits (up to redis_timeout)
        # for one to be free, rather than failing at once as the default pool does.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=REDIS_CONNECTIONS,
            timeout=settings.redis_timeout,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return Redis(connection_pool=pool)
    except ValueError as exc:
        raise ConfigError(f"setting 'redis_url' is not a usable Redis URL: {exc}") from None


async def _check_secret(sessions: async_sessionmaker[AsyncSession], vault: Vault) -> None:
    async with sessions.begin() as session:
        stored = await session.get(Meta, SECRET_CHECK_KEY)
        if stored is None:
            session.add(Meta(key=SECRET_CHECK_KEY, value=vault.encrypt(CHECK_PLAINTEXT)))
            return
        try:
            vault.decrypt(stored.value)
        except DecryptionFailed:
            raise ConfigError(
                "RELAYGATE_SECRET_KEY is not the key this database's provider keys were "
                "encrypted with: set the original key (or the generated key file beside the "
                "database)"
            ) from None


@asynccontextmanager
async def open_context(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    allow_weak_secret_key: bool = False,
    clock: Callable[[], datetime] | None = None,
    shared_budgets: bool = False,
) -> AsyncIterator[Context]:
    """Open the database (migrating it), the vault, the HTTP client and the Redis client
    (when ``redis_url`` is set); close them after. ``metrics`` are the server's (a fresh,
    unexposed set when None); ``allow_weak_secret_key`` accepts a weak key file (for
    ``secrets rotate``, see :func:`relaygate.vault.load_secret`); ``clock`` is the time
    budgets go by (tests cross periods with it); ``shared_budgets`` keeps budgets in the
    database even on SQLite (for ``serve --workers``).

    Raises :class:`ConfigError` when the database cannot be opened or the secret
    key is weak or does not match the database.
    """
    if settings.redis_url is not None:  # before anything is written
        require("redis", "redis", "redis_url")
    if settings.sqlite_path is not None:
        check_writable(settings.sqlite_path)
    engine = make_engine(settings.database_url)
    try:
        try:
            await upgrade(engine)
        except (OSError, ConnectionError) as exc:
            raise ConfigError(f"cannot open the database {_safe_url(settings)}: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("sqlalchemy", "asyncpg", "sqlite3")):
                raise ConfigError(
                    f"cannot open the database {_safe_url(settings)}: {str(exc).splitlines()[0]}"
                ) from None
            raise
        sessions = make_sessionmaker(engine, TrackedSession)
        timeouts = Timeouts(
            connect=settings.upstream_connect_timeout,
            first_byte=settings.upstream_first_byte_timeout,
            idle=settings.upstream_idle_timeout,
            total=settings.upstream_total_timeout,
        )
        vault = Vault(load_secret(settings, allow_weak_secret_key=allow_weak_secret_key))
        await _check_secret(sessions, vault)

        async def check(session: AsyncSession) -> None:
            stored = await session.get(Meta, SECRET_CHECK_KEY)
            if stored is not None:
                try:
                    vault.decrypt(stored.value)
                except DecryptionFailed:
                    raise ConfigError(
                        "the secret key was rotated by another process; keeping the current "
                        "snapshot: restart relaygate with the new RELAYGATE_SECRET_KEY"
                    ) from None

        redis = make_redis_client(settings)
        try:
            async with make_http_client(settings, vault.mark) as http, _upstream(settings) as lean:
                yield Context(
                    settings=settings,
                    engine=engine,
                    sessions=sessions,
                    vault=vault,
                    http=http,
                    upstream=lean,
                    snapshots=SnapshotStore(sessions, Loader(vault, timeouts), check),
                    sync_locks=SyncLocks(),
                    health=Health(
                        settings.failure_threshold,
                        settings.cooldown_seconds,
                        settings.max_cooldown_seconds,
                    ),
                    metrics=metrics or Metrics(),
                    replica=f"{socket.gethostname()}:{os.getpid()}",
                    redis=redis,
                    clock=clock,
                    shared_budgets=shared_budgets,
                )
        finally:
            if redis is not None:
                await redis.aclose()
    finally:
        await engine.dispose()


def check_writable(database: Path) -> None:
    """Make the SQLite database's directory if needed and check that relaygate can write
    there (the database, its WAL and the generated secret live in it); raises
    :class:`ConfigError` saying what to fix."""
    directory = database.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the data directory {directory} ({exc.strerror}): set "
            "RELAYGATE_DATABASE_URL to a SQLite file in a writable directory"
        ) from None
    target = database if database.exists() else directory
    if not os.access(target, os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{target} is not writable by this user: fix its permissions or set "
            "RELAYGATE_DATABASE_URL to a SQLite file in a writable directory"
        )


def _safe_url(settings: Settings) -> str:
    """The database URL with any password masked, for messages."""
    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
