"""The settings' own rules, read without starting anything."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from relaygate.errors import ConfigError
from relaygate.secret_keys import is_strong_secret
from relaygate.settings import load_settings

STRONG = bytes(range(200, 232))
"""32 distinct bytes."""


@pytest.mark.parametrize(
    "secret",
    [
        secrets.token_urlsafe(32),
        base64.b64encode(STRONG).decode(),
        base64.b64encode(STRONG).decode().rstrip("="),
        base64.urlsafe_b64encode(STRONG).decode(),
        STRONG.hex(),
        STRONG.hex().upper(),
        base64.b64encode(STRONG + STRONG).decode(),
    ],
    ids=["generated", "base64", "base64-unpadded", "urlsafe", "hex", "hex-upper", "64-bytes"],
)
def test_strong_secrets(secret: str) -> None:
    """32 bytes or more with 16 distinct values, in base64 (either alphabet, padded or
    not) or hex, pass."""
    assert is_strong_secret(secret)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "a",
        base64.urlsafe_b64encode(STRONG[:31]).decode(),
        STRONG[:31].hex(),
        "0" * 64,
        base64.b64encode(bytes(32)).decode(),
        base64.b64encode(bytes(range(15)) * 3).decode(),
        "correct horse battery staple " * 4,
        STRONG.hex() + "0",
        # hex digits are hex, never base64: 44 of them are 22 bytes.
        STRONG.hex()[:44],
        base64.b64encode(STRONG).decode().replace("+", "-"),
        base64.b64encode(STRONG).decode() + "\n",
        "rg-" + secrets.token_urlsafe(32) + "!",
    ],
    ids=[
        "empty",
        "one-character",
        "31-bytes",
        "31-bytes-hex",
        "hex-zeros",
        "base64-zeros",
        "15-distinct-values",
        "passphrase",
        "odd-hex",
        "44-hex-digits",
        "mixed-alphabets",
        "newline",
        "punctuation",
    ],
)
def test_weak_secrets(secret: str) -> None:
    """Anything short of 32 random bytes in base64 or hex is refused."""
    assert not is_strong_secret(secret)


def test_weak_secret_key_setting_is_a_config_error() -> None:
    """A weak `secret_key` fails loading the settings, naming the variable it came from
    and never repeating the value; an empty one means unset."""
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ={"RELAYGATE_SECRET_KEY": "not-a-secret-at-all"})
    assert raised.value.message.startswith(
        "setting 'secret_key' (RELAYGATE_SECRET_KEY) must hold at least 32 random bytes"
    )
    assert "not-a-secret-at-all" not in raised.value.message
    assert load_settings(None, environ={}, secret_key="").secret_key == ""
    weak = load_settings(None, environ={}, secret_key="weak", allow_weak_secret_key=True)
    assert weak.secret_key == "weak"


def test_an_endpoint_number_from_a_variable_is_read(tmp_path: Path) -> None:
    """``${VAR}`` expands to text after the file is parsed: an endpoint's
    batch_concurrency given so loads as the number, and a word there is still refused."""
    config = tmp_path / "relaygate.yaml"
    config.write_text(
        "endpoints:\n  - name: local\n    url: http://127.0.0.1:9/v1\n"
        "    batch_concurrency: ${RG_BATCH:-4}\n"
    )
    assert load_settings(str(config), environ={}).endpoints[0].batch_concurrency == 4
    loaded = load_settings(str(config), environ={"RG_BATCH": "7"})
    assert loaded.endpoints[0].batch_concurrency == 7
    with pytest.raises(ConfigError):
        load_settings(str(config), environ={"RG_BATCH": "many"})
