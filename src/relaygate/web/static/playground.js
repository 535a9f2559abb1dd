// relaygate console: the playground. The page holds no API key: the chat goes to
// /ui/playground/chat with the session's CSRF token, and the reply streams back as the
// proxy's server-sent events.
"use strict";
(function () {
  const form = document.getElementById("playground");
  if (!form) return;
  const csrf = document.body.dataset.csrf;
  const baseUrl = form.closest(".playground").dataset.baseUrl;
  const reply = document.getElementById("play-reply");
  const errorBox = document.getElementById("play-error");
  const send = document.getElementById("play-send");
  const stop = document.getElementById("play-stop");
  let running = null;

  function chat() {
    const data = new FormData(form);
    return {
      model: data.get("model"),
      system: data.get("system").trim(),
      message: data.get("message"),
      max_tokens: parseInt(data.get("max_tokens"), 10) || 1,
    };
  }

  // The chat completion request the server makes of the proxy for this chat.
  function completionBody(c) {
    const messages = c.system ? [{ role: "system", content: c.system }] : [];
    messages.push({ role: "user", content: c.message });
    return { model: c.model, messages: messages, max_tokens: c.max_tokens, stream: true,
             stream_options: { include_usage: true } };
  }

  function curlSnippet(c) {
    const json = JSON.stringify(completionBody(c), null, 2).replace(/'/g, "'\\''");
    return "curl -N " + baseUrl + "/chat/completions \\\n" +
      "  -H \"Authorization: Bearer $RELAYGATE_API_KEY\" \\\n" +
      "  -H \"Content-Type: application/json\" \\\n" +
      "  -d '" + json + "'";
  }

  function pythonSnippet(c) {
    const body = completionBody(c);
    const messages = body.messages.map(function (m) {
      return "        {\"role\": " + JSON.stringify(m.role) + ", \"content\": " +
        JSON.stringify(m.content) + "},";
    });
    return [
      "import os", "", "from openai import OpenAI", "",
      "client = OpenAI(",
      "    base_url=" + JSON.stringify(baseUrl) + ",",
      "    api_key=os.environ[\"RELAYGATE_API_KEY\"],",
      ")",
      "stream = client.chat.completions.create(",
      "    model=" + JSON.stringify(body.model) + ",",
      "    messages=[",
    ].concat(messages, [
      "    ],",
      "    max_tokens=" + body.max_tokens + ",",
      "    stream=True,",
      "    stream_options={\"include_usage\": True},",
      ")",
      "for chunk in stream:",
      "    if chunk.choices and chunk.choices[0].delta.content:",
      "        print(chunk.choices[0].delta.content, end=\"\", flush=True)",
      "    if chunk.usage:",
      "        print(\"\\n\", chunk.usage)",
    ]).join("\n");
  }

  function showSnippets() {
    const c = chat();
    document.getElementById("snippet-curl").textContent = curlSnippet(c);
    document.getElementById("snippet-python").textContent = pythonSnippet(c);
  }

  function stat(name, value) {
    form.ownerDocument.querySelector("[data-stat=" + name + "]").textContent = value;
  }

  function ms(value) { return Math.round(value) + " ms"; }

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON: say the status */ }
    return "the request failed with status " + response.status;
  }

  // One server-sent event's data: a chunk of the reply, the usage, or an error.
  function take(data, times) {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) { fail(chunk.error.message || "the upstream reported an error"); return; }
    const choice = chunk.choices && chunk.choices[0];
    const piece = choice && choice.delta && choice.delta.content;
    if (piece) {
      if (times.first === null) {
        times.first = performance.now();
        stat("ttft", ms(times.first - times.start));
      }
      reply.textContent += piece;
    }
    if (chunk.usage) {
      stat("prompt", String(chunk.usage.prompt_tokens ?? "—"));
      stat("completion", String(chunk.usage.completion_tokens ?? "—"));
    }
  }

  async function run(event) {
    event.preventDefault();
    if (running) return;
    const c = chat();
    if (!c.message.trim()) { fail("write a message first"); return; }
    errorBox.hidden = true;
    reply.textContent = "";
    ["prompt", "completion", "ttft", "total"].forEach(function (name) { stat(name, "—"); });
    running = new AbortController();
    send.disabled = true; stop.disabled = false;
    reply.classList.add("streaming");
    const times = { start: performance.now(), first: null };
    try {
      const response = await fetch("/ui/playground/chat", {
        method: "POST", credentials: "same-origin", signal: running.signal,
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream" },
        body: JSON.stringify(c),
      });
      if (!response.ok) { fail(await errorOf(response)); return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter(function (line) { return line.startsWith("data:"); })
            .map(function (line) { return line.slice(5).trim(); }).join("\n");
          if (data) take(data, times);
        }
      }
      stat("total", ms(performance.now() - times.start));
    } catch (e) {
      if (e.name === "AbortError") fail("stopped");
      else fail("the reply could not be read: " + e.message);
    } finally {
      running = null;
      send.disabled = false; stop.disabled = true;
      reply.classList.remove("streaming");
    }
  }

  form.addEventListener("submit", run);
  form.addEventListener("input", showSnippets);
  stop.addEventListener("click", function () { if (running) running.abort(); });
  showSnippets();
})();
