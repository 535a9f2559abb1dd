"""relaygate: a self-hosted control layer for AI models."""

__version__ = "0.1.0"
