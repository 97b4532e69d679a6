#!/usr/bin/env bash
# The main job on the embedded default: a collector on SQLite with a generated inventory of the
# 3,321 communes, and a local agent probing this machine and pushing its reports to it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO=${DEMO_DIR:-.state/demo}
AGENT_EXAMPLE=${CONFIG:-config/agent.example.yaml}
PORT=${COLLECTOR_PORT:-8470}
URL="http://127.0.0.1:$PORT"
SITE=$(sed -n 's/^  id: *\([a-z0-9-]*\).*/\1/p;T;q' "$AGENT_EXAMPLE")  # the first id; no pipeline to fail
mkdir -p "$DEMO"

cat > "$DEMO/collector.yaml" <<YAML
listen: 127.0.0.1:$PORT
data_dir: $DEMO/collector
aggregator: {interval: 30s}
YAML
$BIN/commune-collector check-config "$DEMO/collector.yaml"

echo "== inventory: 3,321 communes over 34 provinces (generated), plus config/inventory.example.csv =="
$BIN/commune-collector sites generate --seed 1 -o "$DEMO/inventory.csv"
$BIN/commune-collector sites import "$DEMO/inventory.csv" --config "$DEMO/collector.yaml"
$BIN/commune-collector sites import config/inventory.example.csv --config "$DEMO/collector.yaml"

echo "== a token for the demo agent's site ($SITE), shown once, kept in $DEMO/agent.token =="
$BIN/commune-collector token revoke "$SITE" --config "$DEMO/collector.yaml" >/dev/null 2>&1 || true
(umask 077 && $BIN/commune-collector token issue "$SITE" --config "$DEMO/collector.yaml" > "$DEMO/agent.token")

echo "== a national operator's token for you, kept in $DEMO/operator.token (every page and API needs one) =="
$BIN/commune-collector operator revoke demo-operator --config "$DEMO/collector.yaml" >/dev/null 2>&1 || true
(umask 077 && $BIN/commune-collector operator create demo-operator --role national --expires 7d \
  --config "$DEMO/collector.yaml" > "$DEMO/operator.token")
OPERATOR_TOKEN=$(cat "$DEMO/operator.token")

sed -e "s#^  state_dir: .*#  state_dir: $DEMO/agent#" "$AGENT_EXAMPLE" > "$DEMO/agent.yaml"
cat >> "$DEMO/agent.yaml" <<YAML
collector:
  url: $URL
  token_file: $DEMO/agent.token
  push_interval: 10s
YAML
$BIN/commune-agent check-config "$DEMO/agent.yaml"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== starting the collector (log: $DEMO/collector.log) =="
$BIN/commune-collector serve --config "$DEMO/collector.yaml" > "$DEMO/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if $BIN/python -c "import urllib.request,sys; urllib.request.urlopen('$URL/readyz', timeout=1)" 2>/dev/null; then break; fi
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the collector exited:"; tail -20 "$DEMO/collector.log"; exit 1; }
  sleep 0.2
done

echo "== starting the agent, pushing to the collector (log: $DEMO/agent.log) =="
$BIN/commune-agent run --config "$DEMO/agent.yaml" > "$DEMO/agent.log" 2>&1 &
pids+=($!)

cat <<TXT

  sign in            $URL/login  with the operator token: $OPERATOR_TOKEN
                     (API: curl -H "Authorization: Bearer \$(cat $DEMO/operator.token)" $URL/api/v1/sites)
  status page        $URL/
  API docs           $URL/docs
  sites (Hà Nội)     $URL/api/v1/sites?province=ha-noi
  the demo site      $URL/api/v1/sites/$SITE
  collector metrics  $URL/metrics
  agent metrics      http://127.0.0.1:9469/metrics

The agent pushes every 10 s; its site shows its latest checks within ~20 s. Ctrl-C stops both.
TXT
wait -n "${pids[@]}"
echo "a process exited; see $DEMO/*.log"
