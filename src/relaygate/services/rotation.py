"""Secret-key rotation: re-encrypt every stored provider key under a new secret key."""

from __future__ import annotations

from sqlalchemy import select

from relaygate.changes import bump
from relaygate.context import SECRET_CHECK_KEY, Context
from relaygate.db.tables import Endpoint, Meta
from relaygate.vault import CHECK_PLAINTEXT, Vault


async def rotate_secret(ctx: Context, new_secret: str) -> int:
    """Decrypt each provider key with the current secret and encrypt it with ``new_secret``,
    all in one transaction. Returns how many keys were re-encrypted.

    Raises :class:`relaygate.vault.DecryptionFailed` (and changes nothing) when a stored
    key does not decrypt with the current secret.
    """
    new = Vault(new_secret)
    async with ctx.sessions.begin() as session:
        endpoints = (
            await session.scalars(select(Endpoint).where(Endpoint.api_key_encrypted.is_not(None)))
        ).all()
        for endpoint in endpoints:
            assert endpoint.api_key_encrypted is not None
            endpoint.api_key_encrypted = new.encrypt(ctx.vault.decrypt(endpoint.api_key_encrypted))
        await session.merge(Meta(key=SECRET_CHECK_KEY, value=new.encrypt(CHECK_PLAINTEXT)))
        # Running servers notice the change and say they need a restart with the new key.
        await bump(session)
    return len(endpoints)
