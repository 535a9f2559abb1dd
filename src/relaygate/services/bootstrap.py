"""First-start work: seed endpoints from the config file, import ``RELAYGATE_ADMIN_KEY``,
and create a first admin when there is none."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from relaygate.audit import CONFIG, SYSTEM
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.tables import ApiKey, Endpoint, Meta, User, utcnow
from relaygate.endpoint_spec import EndpointSpec
from relaygate.errors import BadRequest, ConfigError, Conflict
from relaygate.keys import hash_key
from relaygate.services.api_keys import create_key
from relaygate.services.endpoints import (
    check_spec,
    grant_endpoint_to,
    new_endpoint,
)
from relaygate.services.users import create_user
from relaygate.settings import Settings

log = logging.getLogger(__name__)
SEEDED_KEY = "seeded_at"
FIRST_ADMIN_NAME = "admin"


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What start-up did: endpoint names seeded or ignored, and a new admin key to print."""

    seeded: list[str]
    ignored: list[str]
    new_admin_key: str | None


def check_seeds(settings: Settings) -> None:
    """Check the config file's endpoints before anything is written; raises
    :class:`ConfigError` naming the entry and what to fix."""
    names: set[str] = set()
    for seed in settings.endpoints:
        try:
            check_spec(settings, seed)
        except BadRequest as exc:
            raise ConfigError(f"config endpoint {seed.name!r}: {exc.message}") from None
        if seed.name in names:
            raise ConfigError(f"the config file lists endpoint {seed.name!r} twice")
        names.add(seed.name)


async def seed_endpoints(ctx: Context) -> tuple[list[str], list[str]]:
    """Write the config file's endpoints into a database that has never been seeded,
    all in one transaction with the mark that seeding happened.

    Returns (seeded names, ignored names). On a database seeded before, config
    entries that differ from the stored endpoints are ignored and named in a warning.
    """
    check_seeds(ctx.settings)
    seeds = ctx.settings.endpoints
    async with ctx.sessions() as session:
        seeded_at = await session.get(Meta, SEEDED_KEY)
        stored = {e.name: e for e in (await session.scalars(select(Endpoint))).all()}
    if seeded_at is not None:
        ignored = [
            seed.name
            for seed in seeds
            if seed.name not in stored
            or stored[seed.name].url != seed.url.rstrip("/")
            or stored[seed.name].type != seed.type
        ]
        if ignored:
            log.warning(
                "ignored endpoint(s) %s from the config file: it seeds endpoints only when the "
                "database is first created (this one was seeded %s); change endpoints with the "
                "admin API, the web console or `relaygate endpoints`",
                ", ".join(repr(n) for n in ignored),
                seeded_at.value,
            )
        return [], ignored
    specs = list(seeds)
    try:
        with ctx.audit.acting(CONFIG):
            await _seed(ctx, specs)
    except IntegrityError:
        # Another replica, starting at the same moment, seeded first.
        log.info("the database was seeded by another process")
        return [], []
    for seed in seeds:
        log.info("seeded endpoint %r from the config file", seed.name)
    return [seed.name for seed in seeds], []


async def _seed(ctx: Context, specs: list[EndpointSpec]) -> None:
    async with unit(ctx) as session:
        session.add(Meta(key=SEEDED_KEY, value=utcnow().isoformat()))
        await session.flush()
        for spec in specs:
            row = new_endpoint(ctx, spec)
            session.add(row)
            await session.flush()
            await grant_endpoint_to(session, row.id, spec.groups)


async def _admin_user(ctx: Context) -> User | None:
    async with ctx.sessions() as session:
        return await session.scalar(select(User).where(User.role == "admin").order_by(User.id))


async def _first_admin(ctx: Context) -> User:
    """Create the first admin; when a replica starting at the same moment made it first,
    use that one. Raises :class:`ConfigError` when the name is taken by a non-admin."""
    with contextlib.suppress(Conflict):
        await create_user(ctx, name=FIRST_ADMIN_NAME, role="admin")
    admin = await _admin_user(ctx)
    if admin is None:
        raise ConfigError(
            f"there is no admin, and a user named {FIRST_ADMIN_NAME!r} exists who is not "
            "one: make a user an admin with `relaygate users update NAME --role admin`"
        )
    return admin


async def import_admin_key(ctx: Context, key: str) -> None:
    """Make ``key`` an admin key (idempotent; the key is never logged)."""
    async with ctx.sessions() as session:
        existing = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if existing is not None:
        if existing.revoked_at is not None:
            log.warning("RELAYGATE_ADMIN_KEY was revoked; it is not imported again")
        return
    admin = await _admin_user(ctx) or await _first_admin(ctx)
    try:
        await create_key(ctx, user=admin.id, name="RELAYGATE_ADMIN_KEY", key=key)
    except IntegrityError:
        # Another replica, starting at the same moment, imported it first.
        return
    log.info("imported RELAYGATE_ADMIN_KEY as an admin key")


async def bootstrap(ctx: Context) -> BootstrapResult:
    """Run the start-up steps above; ``new_admin_key`` is set only when a first admin
    was created, for the caller to print once. Changes are audited as ``config``'s
    (seeding) and ``system``'s (the first admin, the imported admin key)."""
    seeded, ignored = await seed_endpoints(ctx)
    with ctx.audit.acting(SYSTEM):
        return await _accounts(ctx, seeded, ignored)


async def _accounts(ctx: Context, seeded: list[str], ignored: list[str]) -> BootstrapResult:
    new_key = None
    if ctx.settings.admin_key:
        await import_admin_key(ctx, ctx.settings.admin_key)
    elif await _admin_user(ctx) is None:
        try:
            user = await create_user(ctx, name=FIRST_ADMIN_NAME, role="admin")
        except Conflict:
            await _first_admin(ctx)  # made by a replica starting at once, or a ConfigError
            return BootstrapResult(seeded, ignored, None)
        new_key = (await create_key(ctx, user=user.id, name="first admin key")).key
    return BootstrapResult(seeded, ignored, new_key)
