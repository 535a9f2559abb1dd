"""Translation between the APIs clients speak and the ones endpoints serve.

One module per direction, each pure (no I/O) and readable as a mapping table:

- :mod:`.messages_to_chat`: an Anthropic Messages client in front of an endpoint that
  serves only OpenAI chat completions (Claude Code on vLLM, llama.cpp, Ollama…).
- :mod:`.responses_to_chat`: an OpenAI Responses client (Codex CLI) in front of a
  chat-completions endpoint.
- :mod:`.chat_to_messages`: an OpenAI chat-completions client in front of Anthropic's
  native Messages API.

Each direction offers the same four pieces (see :mod:`.base`): ``request`` (the client's
body → the endpoint's), ``response`` (the endpoint's whole JSON answer → the client's),
``error`` (the endpoint's error → the client's error shape) and a ``Stream`` class that
turns the endpoint's server-sent events into the client's, event by event, as they come.
The proxy (:mod:`relaygate.proxy.translation`) wires them to the request path.
"""
