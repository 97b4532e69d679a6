#!/usr/bin/env bash
# The main job on the embedded default: a local agent probing this machine, serving /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CONFIG=${CONFIG:-config/agent.example.yaml}
$BIN/commune-agent check-config "$CONFIG"
echo "== what the agent sees (probe-once) =="
$BIN/commune-agent probe-once --config "$CONFIG" || true
echo
echo "== running the agent; /metrics at http://127.0.0.1:9469/metrics (Ctrl-C to stop) =="
exec $BIN/commune-agent run --config "$CONFIG" --no-push
