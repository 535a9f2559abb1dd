"""Fixtures: loopback Anthropic and Google stand-ins."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.providers import AnthropicState, GoogleState, make_anthropic, make_google
from tests.support.servers import ServerThread


@dataclass
class Running:
    url: str
    server: ServerThread


@pytest.fixture
def anthropic_state() -> AnthropicState:
    return AnthropicState()


@pytest.fixture
def anthropic_api(anthropic_state: AnthropicState) -> Iterator[Running]:
    server = ServerThread(make_anthropic(anthropic_state)).start()
    yield Running(server.url + "/v1", server)
    server.stop()


@pytest.fixture
def google_state() -> GoogleState:
    return GoogleState()


@pytest.fixture
def google_api(google_state: GoogleState) -> Iterator[Running]:
    server = ServerThread(make_google(google_state)).start()
    yield Running(server.url + "/v1beta/openai", server)
    server.stop()
