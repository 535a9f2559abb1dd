"""The OpenAI-compatible proxy: ``/v1/models`` and forwarding by the body's ``model``."""

from relaygate.proxy.app import Proxy

__all__ = ["Proxy"]
