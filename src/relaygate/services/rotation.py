"""Secret-key rotation: re-encrypt every encrypted value under a new secret key."""

from __future__ import annotations

from sqlalchemy import select, update

from relaygate import audit
from relaygate.changes import declare, unit
from relaygate.context import SECRET_CHECK_KEY, Context
from relaygate.db.tables import Meta, encrypted_columns
from relaygate.vault import CHECK_PLAINTEXT, Vault


async def rotate_secret(ctx: Context, new_secret: str) -> int:
    """Decrypt every encrypted value (each ``*_encrypted`` column of every table:
    endpoints' keys, users' own provider keys, anything added later) with the current
    secret and encrypt it with ``new_secret``, in one transaction, then decrypt each
    again with the new secret before committing. Returns how many values were
    re-encrypted.

    Raises :class:`relaygate.vault.DecryptionFailed` (and changes nothing) when a stored
    value does not decrypt with the current secret, or RuntimeError when one does not
    read back under the new one.
    """
    new = Vault(new_secret)
    count = 0
    async with unit(ctx) as session:
        for table, column in encrypted_columns():
            keys = list(table.primary_key.columns)
            rows = (await session.execute(select(*keys, column).where(column.is_not(None)))).all()
            for *ids, token in rows:
                fresh = new.encrypt(ctx.vault.decrypt(token))
                match = [key == value for key, value in zip(keys, ids, strict=True)]
                await session.execute(update(table).where(*match).values({column.name: fresh}))
                count += 1
        for _, column in encrypted_columns():
            for (token,) in await session.execute(select(column).where(column.is_not(None))):
                new.decrypt(token)  # raises DecryptionFailed: nothing is committed
        await session.merge(Meta(key=SECRET_CHECK_KEY, value=new.encrypt(CHECK_PLAINTEXT)))
        # Running servers notice the change and say they need a restart with the new key.
        declare(session, "all", 0)
        audit.note(session, "secret_key.rotate", "installation", None, values={"rows": count})
    return count
