"""User API keys: create (shown once), list, change (name, rate limits), revoke; and
``last_used_at`` kept in memory and written in batches, never once per request."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from relaygate.account_spec import KeyUpdate
from relaygate.budget import check_budget
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.tables import ApiKey, User, utcnow
from relaygate.errors import BadRequest, Conflict, NotFound
from relaygate.keys import display_prefix, generate_key, hash_key
from relaygate.ratelimit import check_limit
from relaygate.services.budgets import (
    BudgetFields,
    apply_budget,
    budget_within_caller,
    with_spend,
)
from relaygate.services.users import find_user
from relaygate.snapshot import Principal


@dataclass(frozen=True, slots=True)
class KeyInfo(BudgetFields):
    """An API key as listed: never the key itself, only its first characters."""

    id: int
    name: str
    user_id: int
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    allowed_models: list[str] | None
    """The public model names the key is limited to (null: every model its user may use)"""
    requests_per_minute: int | None
    tokens_per_minute: int | None


@dataclass(frozen=True, slots=True)
class KeyCreated(KeyInfo):
    """A key just created: ``key`` is the secret, returned this once only."""

    key: str
    """The API key itself, shown this once"""


def _created(info: KeyInfo, secret: str) -> KeyCreated:
    return KeyCreated(**{f.name: getattr(info, f.name) for f in fields(info)}, key=secret)


def _info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        key.id,
        key.name,
        key.user_id,
        key.prefix,
        key.created_at,
        key.expires_at,
        key.last_used_at,
        key.revoked_at,
        key.allowed_models,
        key.requests_per_minute,
        key.tokens_per_minute,
        budget=key.budget,
        budget_period=key.budget_period,
        budget_reset_at=key.budget_reset_at,
    )


async def _spent(ctx: Context, info: KeyInfo) -> KeyInfo:
    return (await with_spend(ctx, "key", [info]))[0]


async def list_keys(
    ctx: Context, *, user_id: int | None = None, with_budget: bool = False
) -> list[KeyInfo]:
    """Every key (revoked ones included), optionally of one user or only those with a
    budget, with their budgets' spend."""
    query = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    if with_budget:
        query = query.where(ApiKey.budget.is_not(None), ApiKey.revoked_at.is_(None))
    async with ctx.sessions() as session:
        infos = [_info(key) for key in (await session.scalars(query)).all()]
    return await with_spend(ctx, "key", infos)


async def get_key(ctx: Context, key_id: int) -> KeyInfo:
    """One key, with its budget's spend; raises :class:`NotFound`."""
    async with ctx.sessions() as session:
        row = await session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"no API key with id {key_id}")
        info = _info(row)
    return await _spent(ctx, info)


async def create_key(
    ctx: Context,
    *,
    user: int | str,
    name: str,
    expires_at: datetime | None = None,
    key: str | None = None,
    allowed_models: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    budget: float | None = None,
    budget_period: str | None = None,
) -> KeyCreated:
    """Create an API key for ``user`` (id or name). ``key`` imports an existing secret
    instead of generating one; ``allowed_models`` limits it to those public model names
    (within its user's access); ``requests_per_minute`` and ``tokens_per_minute`` limit
    the key's own use (None: no limit of its own), ``budget`` its spend per
    ``budget_period``. Raises :class:`NotFound` or :class:`BadRequest`."""
    budget, budget_period = check_budget(budget, budget_period)
    requests_per_minute = check_limit(requests_per_minute, "requests_per_minute")
    tokens_per_minute = check_limit(tokens_per_minute, "tokens_per_minute")
    if allowed_models is not None and not all(
        isinstance(name, str) and name for name in allowed_models
    ):
        raise BadRequest("allowed_models must be a list of model names", param="allowed_models")
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= utcnow():
            raise BadRequest("expires_at must be in the future", param="expires_at")
    secret = key or generate_key()
    async with unit(ctx) as session:
        owner = await find_user(session, user)
        if owner.disabled:
            raise Conflict(
                f"user {owner.name!r} is disabled: enable them before creating keys",
                code="user_disabled",
            )
        held = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.user_id == owner.id, ApiKey.revoked_at.is_(None))
        )
        if (held or 0) >= ctx.settings.max_keys_per_user:
            raise Conflict(
                f"user {owner.name!r} already has {held} API keys, the most a user may hold "
                "(setting max_keys_per_user): revoke one first",
                code="too_many_keys",
            )
        row = ApiKey(
            name=name.strip() or "key",
            user_id=owner.id,
            prefix=display_prefix(secret),
            key_hash=hash_key(secret),
            expires_at=expires_at,
            allowed_models=list(dict.fromkeys(allowed_models))
            if allowed_models is not None
            else None,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            budget=budget,
            budget_period=budget_period,
        )
        session.add(row)
        await session.flush()
    return _created(await _spent(ctx, _info(row)), secret)


async def create_key_within(
    ctx: Context,
    caller: Principal,
    *,
    user: int | str,
    name: str,
    own: bool,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    budget: float | None = None,
    budget_period: str | None = None,
) -> KeyCreated:
    """Create a key as ``caller`` may, whoever asks (the admin API, ``/me/keys``, the
    console): never more models, a later expiry or a higher (or no) rate limit than the
    calling key and its user have, what is omitted taking the caller's
    (:func:`within_caller_limits`, :func:`rate_limits_within_caller`); and a key the
    caller makes for itself (``own``) never from a key with a budget of its own
    (:func:`relaygate.services.budgets.budget_within_caller`). Raises what those raise."""
    if own:
        budget, budget_period = budget_within_caller(caller, budget, budget_period)
    allowed, expires = within_caller_limits(caller, allowed_models, expires_at)
    rpm, tpm = rate_limits_within_caller(caller, requests_per_minute, tokens_per_minute)
    return await create_key(
        ctx,
        user=user,
        name=name,
        expires_at=expires,
        allowed_models=allowed,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        budget=budget,
        budget_period=budget_period,
    )


def within_caller_limits(
    caller: Principal, allowed_models: list[str] | None, expires_at: datetime | None
) -> tuple[list[str] | None, datetime | None]:
    """The model limit and expiry of a key ``caller`` creates, for any user: never more
    models, nor a later expiry, than the calling key has; what is omitted (None) takes
    the caller's. Returns (allowed_models, expires_at); raises :class:`BadRequest`
    (``param`` ``allowed_models`` or ``expires_at``) when asked for more."""
    if caller.allowed_models is not None:
        if allowed_models is None:
            allowed_models = sorted(caller.allowed_models)
        elif not set(allowed_models) <= caller.allowed_models:
            raise BadRequest(
                "a key limited to some models cannot create a key for other models",
                param="allowed_models",
            )
    if caller.expires_at is not None:
        limit = datetime.fromtimestamp(caller.expires_at, UTC)
        if expires_at is None:
            expires_at = limit
        elif (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)) > limit:
            raise BadRequest("a new key cannot outlive the key creating it", param="expires_at")
    return allowed_models, expires_at


def rate_limits_within_caller(
    caller: Principal, requests_per_minute: int | None, tokens_per_minute: int | None
) -> tuple[int | None, int | None]:
    """The rate limits of a key ``caller`` creates, for any user: never above (nor
    without) a limit that the calling key or its user has; an omitted limit takes that
    ceiling. Returns (requests_per_minute, tokens_per_minute); raises :class:`BadRequest`
    when asked for more."""
    limits = caller.limits
    if limits is None:
        return requests_per_minute, tokens_per_minute
    return (
        _within(requests_per_minute, limits.key_rpm, limits.user_rpm, "requests_per_minute"),
        _within(tokens_per_minute, limits.key_tpm, limits.user_tpm, "tokens_per_minute"),
    )


def rate_limit_change_within_caller(caller: Principal, sent: Mapping[str, Any]) -> None:
    """Check a change of a key's or user's rate limits that ``caller`` asks for (``sent``:
    the change's fields; a limit left out stays, None clears it): where the calling key
    or its user has a limit, the changed one may be neither cleared nor set above it.
    Raises :class:`BadRequest` (``param`` the limit's name) otherwise."""
    limits = caller.limits
    if limits is None:
        return
    for key, user, param in (
        (limits.key_rpm, limits.user_rpm, "requests_per_minute"),
        (limits.key_tpm, limits.user_tpm, "tokens_per_minute"),
    ):
        ceiling = _ceiling(key, user)
        if param not in sent or ceiling is None:
            continue
        asked = sent[param]
        if asked is None:
            raise BadRequest(
                f"{param} cannot be cleared by a key limited to {ceiling} (its own or its "
                "user's limit)",
                param=param,
            )
        _within(asked, key, user, param)


def _ceiling(key: int | None, user: int | None) -> int | None:
    ceilings = [limit for limit in (key, user) if limit is not None]
    return min(ceilings) if ceilings else None


def _within(asked: int | None, key: int | None, user: int | None, param: str) -> int | None:
    ceiling = _ceiling(key, user)
    if ceiling is None:
        return asked
    if asked is None:
        return ceiling
    if asked > ceiling:
        raise BadRequest(
            f"{param} cannot be above {ceiling}, the limit of your key or your user",
            param=param,
        )
    return asked


async def update_key(
    ctx: Context,
    key_id: int,
    changes: KeyUpdate,
) -> KeyInfo:
    """Apply the fields ``changes`` sent: a key's name, its rate limits per minute (None
    clears a limit) or its budget (None clears it, see
    :func:`relaygate.services.budgets.apply_budget`). Raises :class:`NotFound` or
    :class:`BadRequest`."""
    sent = changes.changes()
    async with unit(ctx) as session:
        row = await session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"no API key with id {key_id}")
        if "name" in sent:
            row.name = sent["name"].strip() or "key"
        for limit in ("requests_per_minute", "tokens_per_minute"):
            if limit in sent:
                setattr(row, limit, check_limit(sent[limit], limit))
        apply_budget(row, sent)
    return await _spent(ctx, _info(row))


async def revoke_key(ctx: Context, key_id: int, *, owner_id: int | None = None) -> KeyInfo:
    """Revoke a key (idempotent); with ``owner_id``, only that user's key. Raises NotFound."""
    async with unit(ctx) as session:
        row = await session.get(ApiKey, key_id)
        if row is None or (owner_id is not None and row.user_id != owner_id):
            raise NotFound(f"no API key with id {key_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
    return _info(row)


async def find_key_owner(ctx: Context, key: str) -> tuple[ApiKey, User] | None:
    """The stored key and its user for the secret ``key``, or None."""
    async with ctx.sessions() as session:
        row = (
            await session.execute(
                select(ApiKey, User).join(User).where(ApiKey.key_hash == hash_key(key))
            )
        ).first()
        return (row[0], row[1]) if row else None


class KeyActivity:
    """Remembers when each key was last used (a dict write per request) and writes
    the times to ``api_keys.last_used_at`` in one batch on :meth:`flush`."""

    def __init__(self) -> None:
        self._pending: dict[int, float] = {}

    def touch(self, key_id: int) -> None:
        """Record that ``key_id`` was used now."""
        self._pending[key_id] = time.time()

    async def flush(self, ctx: Context) -> int:
        """Write the pending times; returns how many keys were updated."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        async with ctx.sessions.begin() as session:
            for key_id, used in pending.items():
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .values(last_used_at=datetime.fromtimestamp(used, UTC))
                )
        return len(pending)
