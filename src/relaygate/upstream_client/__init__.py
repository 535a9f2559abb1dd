"""The proxy's HTTP/1.1 client for forwarded requests: a keep-alive pool on asyncio
protocols with httptools' parser (:mod:`relaygate.upstream_client.pool`), its
connections (:mod:`relaygate.upstream_client.connection`) and its failures, aiohttp's
(:mod:`relaygate.upstream_client.errors`)."""

from relaygate.upstream_client.connection import Answer
from relaygate.upstream_client.pool import Exchange, LeanClient

__all__ = ["Answer", "Exchange", "LeanClient"]
