"""A real OpenID provider on loopback (npm's oidc-provider, run by ``idp.mjs``) and
relaygate gateways signing in through it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / ".e2e-tools" / "sso" / "node_modules"
SECRET_ENV = "CORP_OIDC_SECRET"


@dataclass
class Idp:
    """The running provider, and the port relaygate must listen on (its redirect URIs)."""

    issuer: str
    gateway_port: int

    def set_groups(self, name: str, groups: list[str]) -> None:
        """Change ``name``'s groups in the provider's directory (from the next sign-in)."""
        httpx.put(f"{self.issuer}/test/groups/{name}", json=groups, timeout=10).raise_for_status()

    def provider(self, name: str = "corp", **fields: Any) -> dict[str, Any]:
        """An ``oidc:`` entry for client ``name`` (corp, corp-short, corp-tampered)."""
        entry: dict[str, Any] = {
            "name": name,
            "issuer": self.issuer,
            "client_id": name.replace("corp", "relaygate"),
            "client_secret_env": SECRET_ENV,
            "scopes": ["openid", "email", "profile", "groups"],
            "groups_claim": "groups",
            "admin_groups": ["relaygate-admins"],
            "group_map": {"team-alice": "team-a", "team-bob": "team-b"},
        }
        entry.update(fields)
        return entry


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    missing = not MODULES.joinpath("oidc-provider").is_dir() or shutil.which("node") is None
    # CI sets RELAYGATE_TEST_REQUIRE_TOOLS: there a missing provider fails, never skips.
    if missing and not os.environ.get("RELAYGATE_TEST_REQUIRE_TOOLS"):
        pytest.skip("oidc-provider is not installed (run scripts/sso-idp)")
    home = tmp_path_factory.mktemp("idp")
    shutil.copy(Path(__file__).with_name("idp.mjs"), home / "idp.mjs")
    (home / "node_modules").symlink_to(MODULES)
    port, gateway_port = free_port(), free_port()
    process = subprocess.Popen(
        ["node", str(home / "idp.mjs"), str(port), f"http://127.0.0.1:{gateway_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        issuer = f"http://127.0.0.1:{port}"
        httpx.get(issuer + "/.well-known/openid-configuration", timeout=10).raise_for_status()
        yield Idp(issuer, gateway_port)
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
