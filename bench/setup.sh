#!/bin/sh
# Installs what bench/compare.py measures against (once; needs the package registries):
# Debian's nginx and wrk, LiteLLM proxy 1.106.12 in its own virtualenv and Portkey's
# gateway 1.15.2 from npm, both under bench/out/peers (ignored by git); matplotlib,
# granian and py-spy into .venv.
set -eu
cd "$(dirname "$0")"
peers=out/peers
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    apt-get install -y -q nginx-light wrk || { apt-get update -q && apt-get install -y -q nginx-light wrk; }
fi
mkdir -p "$peers/portkey"
if [ ! -x "$peers/litellm/bin/python" ]; then
    python3 -m venv "$peers/litellm"
    "$peers/litellm/bin/pip" install -q 'litellm[proxy]==1.106.12'
fi
if [ ! -f "$peers/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
    (cd "$peers/portkey" && npm install --silent --no-audit --no-fund @portkey-ai/gateway@1.15.2)
fi
# The chart, the stack comparison and the profiles, in the project's own environment.
if [ -x ../.venv/bin/pip ]; then
    ../.venv/bin/pip install -q matplotlib granian py-spy
fi
echo "ready: nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk, LiteLLM, Portkey under bench/$peers"
