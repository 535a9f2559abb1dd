"""Reading the configuration from the database into the snapshot: whole at start-up
(:meth:`Loader.load`), and change by change after (:meth:`Loader.apply`), reading only
the rows a change names and updating their entries in place.

Bulk reads come in slices of :data:`SLICE` rows with a yield to the event loop between
two, and so do recomputations of many model names: no step of applying a change holds
the loop for long, whatever the size of the installation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.access import EVERYONE
from relaygate.budget import budget_of
from relaygate.catalog import Catalog, EndpointEntry
from relaygate.changes import Change
from relaygate.db.tables import (
    ApiKey,
    Endpoint,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Model,
    User,
    UserProviderKey,
)
from relaygate.entries import MODEL_COLUMNS, Entries
from relaygate.providers import ALL_ROUTES
from relaygate.snapshot import ADMIN_ACCESS, Access, Principal, Snapshot, UserState
from relaygate.targets import DEFAULT_TIMEOUTS, Surfaces, Timeouts
from relaygate.vault import Vault

log = logging.getLogger(__name__)

KEY_COLUMNS = (
    ApiKey.id,
    ApiKey.user_id,
    ApiKey.key_hash,
    ApiKey.revoked_at,
    ApiKey.expires_at,
    ApiKey.allowed_models,
    ApiKey.requests_per_minute,
    ApiKey.tokens_per_minute,
    ApiKey.name,
    ApiKey.budget,
    ApiKey.budget_period,
    ApiKey.budget_reset_at,
)
USER_COLUMNS = (
    User.id,
    User.role,
    User.requests_per_minute,
    User.tokens_per_minute,
    User.name,
    User.budget,
    User.budget_period,
    User.budget_reset_at,
)
GROUP_COLUMNS = (Group.id, Group.name, Group.budget, Group.budget_period, Group.budget_reset_at)
OWN_KEY_COLUMNS = (
    UserProviderKey.user_id,
    UserProviderKey.endpoint_id,
    UserProviderKey.api_key_encrypted,
)
SLICE = 200
"""Rows read, or names recomputed, between two yields to the event loop."""


async def _slices(session: AsyncSession, statement: Executable) -> AsyncIterator[Sequence[Any]]:
    """The rows of ``statement`` in slices of :data:`SLICE`, yielding to the event loop
    between two, so that reading 100,000 rows never holds it."""
    result = await session.stream(statement.execution_options(yield_per=SLICE))
    async for rows in result.partitions(SLICE):
        yield rows
        await asyncio.sleep(0)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class Loader:
    """Reads the configuration from the database into a :class:`Snapshot` (:meth:`load`)
    and applies a :class:`relaygate.changes.Change` to one (:meth:`apply`), reading only
    the rows the change names. ``timeouts`` are the defaults an endpoint's own override.
    Every secret is decrypted once, when its row is read."""

    def __init__(self, vault: Vault, timeouts: Timeouts = DEFAULT_TIMEOUTS):
        self.recomputed = 0
        """Routes recomputed since start: how much a change built (see SnapshotStore)."""
        self._entries = Entries(vault, timeouts)

    # The catalogue: endpoints and models.

    def endpoint_entry(self, row: Endpoint) -> EndpointEntry:
        """``row`` as routing needs it (:meth:`relaygate.entries.Entries.endpoint`)."""
        return self._entries.endpoint(row)

    async def _recompute(self, snapshot: Snapshot, names: Iterable[str]) -> None:
        """Recompute the routes of ``names``, :data:`SLICE` at a time."""
        catalog = _catalog(snapshot)
        count = 0
        for count, name in enumerate(names, 1):
            route = catalog.route(name)
            if route is None:
                snapshot.models.pop(name, None)
            else:
                snapshot.models[name] = route
            if count % SLICE == 0:
                await asyncio.sleep(0)
        if count:
            snapshot.catalogue_changed()
        self.recomputed += count
        policy = ALL_ROUTES
        for entry in catalog.endpoints.values():
            if entry.row.enabled:
                policy = policy.merged(entry.policy)
        snapshot.route_policy = policy

    async def _endpoint(self, snapshot: Snapshot, session: AsyncSession, endpoint_id: int) -> None:
        catalog = _catalog(snapshot)
        row = await session.get(Endpoint, endpoint_id)
        if row is not None:
            session.expunge(row)  # kept in the catalogue: no rollback may expire it
        before = [catalog.models[i] for i in catalog.by_endpoint.get(endpoint_id, ())]
        old = catalog.endpoints.get(endpoint_id)
        if row is None:
            affected = catalog.affected_by(before)
            for model in before:
                catalog.drop(model.id)
            catalog.endpoints.pop(endpoint_id, None)
            catalog.by_endpoint.pop(endpoint_id, None)
            for count, user in enumerate(list(snapshot.users.values()), 1):
                if user.own is not None and endpoint_id in user.own:
                    del user.own[endpoint_id]
                    user.own = user.own or None
                if count % SLICE == 0:
                    await asyncio.sleep(0)
            self._forget_grants(snapshot, endpoint_id, {m.id for m in before})
            await self._recompute(snapshot, affected)
            return
        entry = self.endpoint_entry(row)
        whole = old is None or old.fingerprint != entry.fingerprint
        catalog.endpoints[endpoint_id] = entry
        # Each slice of rows read: its changed models, and the names they affect (their
        # old and new ones), replaced at once; then the models that went.
        seen: set[int] = set()
        affected = set()
        async for rows in _slices(
            session, select(*MODEL_COLUMNS).where(Model.endpoint_id == endpoint_id)
        ):
            changed = []
            for model_row in rows:
                seen.add(model_row.id)
                model = self._entries.model(model_row, row.name)
                if whole or catalog.models.get(model.id) != model:
                    changed.append(model)
            replaced = [catalog.models[m.id] for m in changed if m.id in catalog.models]
            affected |= catalog.affected_by(replaced)
            for model in changed:
                catalog.put(model)
            affected |= catalog.affected_by(changed)
        gone = [m for m in before if m.id not in seen]
        for start in range(0, len(gone), SLICE):
            chunk = gone[start : start + SLICE]
            affected |= catalog.affected_by(chunk)
            for model in chunk:
                catalog.drop(model.id)
            await asyncio.sleep(0)
        if old is not None and _auth(old.row) != _auth(row):
            # Users' own keys travel in the endpoint's auth header: rebuild their surfaces.
            await self._own_keys_of_endpoint(snapshot, session, row)
        await self._recompute(snapshot, affected)

    async def _models(self, snapshot: Snapshot, session: AsyncSession, ids: list[int]) -> None:
        catalog = _catalog(snapshot)
        affected: set[str] = set()
        for start in range(0, len(ids), SLICE):
            chunk = ids[start : start + SLICE]
            rows = {
                row.id: row
                for row in await session.execute(select(*MODEL_COLUMNS).where(Model.id.in_(chunk)))
            }
            for model_id in chunk:
                old = catalog.models.get(model_id)
                if old is not None:
                    affected |= catalog.affected_by([old])
                row = rows.get(model_id)
                if row is None or row.endpoint_id not in catalog.endpoints:
                    catalog.drop(model_id)
                    self._forget_grants(snapshot, None, {model_id})
                    continue
                model = self._entries.model(row, catalog.endpoints[row.endpoint_id].row.name)
                catalog.put(model)
                affected |= catalog.affected_by([model])
            await asyncio.sleep(0)
        await self._recompute(snapshot, affected)

    # Access: groups, users, own provider keys, API keys.

    @staticmethod
    def _fill(snapshot: Snapshot, access: Access) -> None:
        models: set[int] = set()
        endpoints: set[int] = set()
        for group_id in access.groups:
            granted = snapshot.grants.get(group_id)
            if granted is not None:
                models |= granted[0]
                endpoints |= granted[1]
        access.models = frozenset(models)
        access.endpoints = frozenset(endpoints)

    def _forget_grants(
        self, snapshot: Snapshot, endpoint_id: int | None, model_ids: set[int]
    ) -> None:
        """Drop the grants of a deleted endpoint and of deleted models (the database
        cascades)."""
        touched = set()
        for group_id, (models, endpoints) in list(snapshot.grants.items()):
            if endpoint_id in endpoints or models & model_ids:
                snapshot.grants[group_id] = (models - model_ids, endpoints - {endpoint_id})
                touched.add(group_id)
        for access in snapshot.accesses.values():
            if access.groups & touched:
                self._fill(snapshot, access)

    def _assign(self, snapshot: Snapshot, user: UserState) -> None:
        """Point ``user`` at the access of their role and groups (shared, made if new)."""
        if user.role == "admin":
            user.access = ADMIN_ACCESS
            return
        groups = user.groups | {snapshot.everyone} if snapshot.everyone else user.groups
        access = snapshot.accesses.get(groups)
        if access is None:
            access = snapshot.accesses[groups] = Access(groups)
            self._fill(snapshot, access)
        user.access = access

    async def _group(self, snapshot: Snapshot, session: AsyncSession, group_id: int) -> None:
        exists = (await session.execute(select(*GROUP_COLUMNS).where(Group.id == group_id))).first()
        before = snapshot.members.get(group_id, set())
        members: set[int] = set()
        budget = budget_of("group", exists) if exists is not None else None
        if budget is None:
            snapshot.group_budgets.pop(group_id, None)
        else:
            snapshot.group_budgets[group_id] = budget
        if exists is None:
            snapshot.grants.pop(group_id, None)
            snapshot.members.pop(group_id, None)
        else:
            models = await session.scalars(
                select(GroupModel.model_id).where(GroupModel.group_id == group_id)
            )
            endpoints = await session.scalars(
                select(GroupEndpoint.endpoint_id).where(GroupEndpoint.group_id == group_id)
            )
            snapshot.grants[group_id] = (frozenset(models), frozenset(endpoints))
            members = set(
                await session.scalars(
                    select(GroupMember.user_id).where(GroupMember.group_id == group_id)
                )
            )
            snapshot.members[group_id] = members
        for count, access in enumerate(list(snapshot.accesses.values()), 1):
            if group_id in access.groups:
                self._fill(snapshot, access)
            if count % SLICE == 0:
                await asyncio.sleep(0)
        for count, user_id in enumerate(before ^ members, 1):
            if count % SLICE == 0:
                await asyncio.sleep(0)
            user = snapshot.users.get(user_id)
            if user is not None:
                user.groups = (
                    user.groups | {group_id} if user_id in members else user.groups - {group_id}
                )
                self._assign(snapshot, user)
        if exists is None:
            for groups in [g for g in snapshot.accesses if group_id in g]:
                del snapshot.accesses[groups]
        snapshot.catalogue_changed()

    async def _user(self, snapshot: Snapshot, session: AsyncSession, user_id: int) -> None:
        row = (await session.execute(select(*USER_COLUMNS).where(User.id == user_id))).first()
        user = snapshot.users.get(user_id)
        if row is None:
            if user is not None:
                for key_hash in user.keys:
                    snapshot.keys.pop(key_hash, None)
                for group_id in user.groups:
                    snapshot.members.get(group_id, set()).discard(user_id)
                del snapshot.users[user_id]
            return
        if user is None:
            user = snapshot.users[user_id] = UserState(
                user_id, row.role, row[2], row[3], budget_of("user", row)
            )
        else:
            user.role, user.rpm, user.tpm = row.role, row[2], row[3]
            user.budget = budget_of("user", row)
        groups = frozenset(
            await session.scalars(
                select(GroupMember.group_id).where(GroupMember.user_id == user_id)
            )
        )
        for group_id in user.groups ^ groups:
            members = snapshot.members.setdefault(group_id, set())
            (members.add if group_id in groups else members.discard)(user_id)
        user.groups = groups
        self._assign(snapshot, user)
        for key_hash in user.keys:
            principal = snapshot.keys.get(key_hash)
            if principal is not None:
                principal.user_changed()

    def _own_surfaces(self, snapshot: Snapshot, row: Any) -> Surfaces | None:
        """The surfaces of a user's own key (a row of :data:`OWN_KEY_COLUMNS`), or None
        when it cannot be used."""
        return self._entries.own_surfaces(_catalog(snapshot).endpoints.get(row.endpoint_id), row)

    async def _own_key(self, snapshot: Snapshot, session: AsyncSession, user_id: int) -> None:
        user = snapshot.users.get(user_id)
        if user is None:
            return
        own: dict[int, Surfaces] = {}
        for row in await session.execute(
            select(*OWN_KEY_COLUMNS).where(UserProviderKey.user_id == user_id)
        ):
            surfaces = self._own_surfaces(snapshot, row)
            if surfaces is not None:
                own[row.endpoint_id] = surfaces
        user.own = own or None
        snapshot.catalogue_changed()

    async def _own_keys_of_endpoint(
        self, snapshot: Snapshot, session: AsyncSession, endpoint: Endpoint
    ) -> None:
        async for rows in _slices(
            session,
            select(*OWN_KEY_COLUMNS).where(UserProviderKey.endpoint_id == endpoint.id),
        ):
            for row in rows:
                user = snapshot.users.get(row.user_id)
                if user is None:
                    continue
                surfaces = self._own_surfaces(snapshot, row)
                own = user.own or {}
                if surfaces is None:
                    own.pop(endpoint.id, None)
                else:
                    own[endpoint.id] = surfaces
                user.own = own or None
        snapshot.catalogue_changed()

    def _put_key(self, snapshot: Snapshot, row: Any) -> None:
        user = snapshot.users.get(row.user_id)
        if row.revoked_at is not None or user is None:
            if snapshot.keys.pop(row.key_hash, None) is not None and user is not None:
                user.keys.remove(row.key_hash)
            return
        allowed = None
        if row.allowed_models is not None:
            # Keys limited alike share one set.
            names = frozenset(row.allowed_models)
            allowed = snapshot.name_sets.setdefault(names, names)
        key_hash = row.key_hash
        if snapshot.keys.get(key_hash) is None:
            user.keys.append(key_hash)
        snapshot.keys[key_hash] = Principal(
            row.id, user, _epoch(row.expires_at), allowed, row[6], row[7], budget_of("key", row)
        )

    async def _key(self, snapshot: Snapshot, session: AsyncSession, key_id: int) -> None:
        row = (await session.execute(select(*KEY_COLUMNS).where(ApiKey.id == key_id))).first()
        if row is not None:
            self._put_key(snapshot, row)

    # The whole, and one change.

    async def load(self, session: AsyncSession, version: int) -> Snapshot:
        """Read the whole configuration in ``session`` into a new snapshot of ``version``.

        Revoked keys are left out; expired ones are kept and refused by their
        ``expires_at``. Models of disabled endpoints, and disabled models, serve nothing;
        of two models of one endpoint with one public name, the aliased one wins.
        """
        snapshot = Snapshot(version, ALL_ROUTES)
        catalog = snapshot.catalog = Catalog()
        for endpoint in (await session.scalars(select(Endpoint))).all():
            session.expunge(endpoint)  # kept in the catalogue: no rollback may expire it
            catalog.endpoints[endpoint.id] = self.endpoint_entry(endpoint)
        async for rows in _slices(session, select(*MODEL_COLUMNS)):
            for row in rows:
                catalog.put(self._entries.model(row, catalog.endpoints[row.endpoint_id].row.name))
        await self._recompute(snapshot, list(catalog.by_name))

        snapshot.everyone = await session.scalar(select(Group.id).where(Group.name == EVERYONE))
        models: dict[int, set[int]] = defaultdict(set)
        endpoints: dict[int, set[int]] = defaultdict(set)
        for group in await session.execute(select(*GROUP_COLUMNS)):
            models[group.id], endpoints[group.id] = set(), set()
            group_budget = budget_of("group", group)
            if group_budget is not None:
                snapshot.group_budgets[group.id] = group_budget
        async for rows in _slices(session, select(GroupModel.group_id, GroupModel.model_id)):
            for group_id, model_id in rows:
                models[group_id].add(model_id)
        async for rows in _slices(
            session, select(GroupEndpoint.group_id, GroupEndpoint.endpoint_id)
        ):
            for group_id, endpoint_id in rows:
                endpoints[group_id].add(endpoint_id)
        for group_id in models:
            snapshot.grants[group_id] = (
                frozenset(models[group_id]),
                frozenset(endpoints[group_id]),
            )
        user_groups: dict[int, set[int]] = defaultdict(set)
        async for rows in _slices(session, select(GroupMember.group_id, GroupMember.user_id)):
            for group_id, user_id in rows:
                user_groups[user_id].add(group_id)
                snapshot.members.setdefault(group_id, set()).add(user_id)
        async for rows in _slices(session, select(*USER_COLUMNS)):
            for row in rows:
                user = snapshot.users[row.id] = UserState(
                    row.id, row.role, row[2], row[3], budget_of("user", row)
                )
                user.groups = frozenset(user_groups.get(row.id, ()))
                self._assign(snapshot, user)
        async for rows in _slices(session, select(*OWN_KEY_COLUMNS)):
            for own_row in rows:
                found = snapshot.users.get(own_row.user_id)
                surfaces = self._own_surfaces(snapshot, own_row)
                if found is not None and surfaces is not None:
                    found.own = found.own or {}
                    found.own[own_row.endpoint_id] = surfaces
        async for rows in _slices(session, select(*KEY_COLUMNS).where(ApiKey.revoked_at.is_(None))):
            for row in rows:
                self._put_key(snapshot, row)
        return snapshot

    async def apply(self, snapshot: Snapshot, session: AsyncSession, change: Change) -> None:
        """Apply ``change`` (not one of everything) to ``snapshot`` in place, reading the
        rows it names in ``session``: endpoints and models first, then groups, users,
        own provider keys and API keys, so that a key finds its new user."""
        catalog = _catalog(snapshot)
        endpoints = change.of("endpoint")
        for endpoint_id in endpoints:
            await self._endpoint(snapshot, session, endpoint_id)
        # A model of an endpoint read whole just now is current already.
        models = [
            i
            for i in change.of("model")
            if i not in catalog.models or catalog.models[i].endpoint_id not in endpoints
        ]
        if models:
            await self._models(snapshot, session, models)
        for group_id in change.of("group"):
            await self._group(snapshot, session, group_id)
        for user_id in change.of("user"):
            await self._user(snapshot, session, user_id)
        for user_id in change.of("own_key"):
            await self._own_key(snapshot, session, user_id)
        for key_id in change.of("key"):
            await self._key(snapshot, session, key_id)


def _auth(endpoint: Endpoint) -> tuple[str, str | None, str | None]:
    """What shapes the headers carrying a key to ``endpoint``."""
    return (endpoint.type, endpoint.auth_header, endpoint.auth_prefix)


def _catalog(snapshot: Snapshot) -> Catalog:
    catalog = snapshot.catalog
    assert catalog is not None, "a snapshot from Loader.load has a catalogue"
    return catalog
