"""Refresh the README's console screenshots (docs/console-*.png) from a seeded relaygate.

Run from the repository root, with the test tools installed and Debian's chromium:

    PYTHONPATH=src:. .venv/bin/python scripts/console_screenshots.py

Everything runs on loopback: a relaygate on a temporary SQLite file, a fake upstream
serving a few models, a second endpoint that refuses connections (to show a failing
sync), two users with a week of usage, and chromium taking the pictures at 1280 px.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from tests.conftest import Upstream
from tests.support.browser import chromium, sign_in, watched_page
from tests.support.gateway import Gateway
from tests.web.conftest import past_usage, wait_for_usage, write_usage

DOCS = Path(__file__).resolve().parent.parent / "docs"
PRICES = {"input_cost_per_million_tokens": 2.5, "output_cost_per_million_tokens": 10}


def seed(gateway: Gateway, upstream: Upstream) -> dict[str, int]:
    """Endpoints, priced models, two users with keys, a group and a week of usage;
    returns the users' ids by name."""
    upstream.state.models = ["gpt-test", "gpt-mini", "text-embed"]
    gateway.add_endpoint("local-vllm", upstream.url)
    gateway.add_endpoint("office-ollama", "http://127.0.0.1:9/v1")
    for model in gateway.admin.get("/admin/api/v1/models").json():
        gateway.admin.patch(f"/admin/api/v1/models/{model['id']}", json=PRICES)
    gateway.admin.post("/admin/api/v1/groups", json={"name": "research"})
    users: dict[str, int] = {}
    records = []
    midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    for name, model, size in (("ann", "gpt-test", 900), ("bob", "gpt-mini", 500)):
        user = gateway.create_user(name)
        users[name] = user["id"]
        key = gateway.create_key(user_id=user["id"], name="laptop")
        gateway.openai(key["key"]).chat.completions.create(model=model, messages=[])
        records += [
            past_usage(
                midnight - timedelta(days=ago, hours=-10),
                user_id=user["id"],
                key_id=key["id"],
                model=model,
                prompt=size + 120 * ago,
                completion=size // 2,
                cost=(size * 2.5 + size // 2 * 10) / 1e6,
            )
            for ago in range(1, 7)
        ]
    gateway.admin.patch(
        f"/admin/api/v1/users/{users['ann']}",
        json={"requests_per_minute": 60, "tokens_per_minute": 100_000},
    )
    write_usage(gateway, records)
    wait_for_usage(gateway, 2 + len(records))
    return users


def main() -> None:
    upstream = Upstream()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(Path(tmp), usage_flush_interval=0.05).start()
        try:
            users = seed(gateway, upstream)
            with chromium() as browser, watched_page(browser) as watched:
                page = watched.page
                sign_in(page, gateway, gateway.admin_key)
                for name, path, full in (
                    ("endpoints", "/ui/endpoints", False),
                    ("usage", "/ui/usage", True),
                    ("people", "/ui/people", True),
                    ("user", f"/ui/users/{users['ann']}", True),
                    ("status", "/ui/status", True),
                    ("account", "/ui/account", True),
                ):
                    page.goto(gateway.url + path)
                    page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=full)
                    print(f"docs/console-{name}.png")
                assert not watched.errors, watched.errors
        finally:
            gateway.stop()
            upstream.stop()


if __name__ == "__main__":
    main()
