#!/usr/bin/env bash
# The main job on the embedded default: a collector on SQLite with a generated inventory of the
# 3,321 communes, a local agent probing this machine and pushing its reports to it, and the fleet
# simulator (commune-collector simulate) standing in for every other commune: a day of history,
# then live reports, with a province's backbone cut, an area on UPS battery, flapping links,
# communes never installed and agents with skewed clocks. With Alertmanager installed
# (prometheus-alertmanager), one is started and the collector's alerts go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO=${DEMO_DIR:-.state/demo}
AGENT_EXAMPLE=${CONFIG:-config/agent.example.yaml}
PORT=${COLLECTOR_PORT:-8470}
URL="http://127.0.0.1:$PORT"
SITE=$(sed -n 's/^  id: *\([a-z0-9-]*\).*/\1/p;T;q' "$AGENT_EXAMPLE")  # the first id; no pipeline to fail
AM_PORT=${ALERTMANAGER_PORT:-19093}
AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
mkdir -p "$DEMO"
# the simulator backfills a day anchored at its start: a fresh store each run keeps the story coherent
rm -rf "$DEMO/collector" "$DEMO/am"

# the demo's criteria: the shipped ones with a 30 s stable period, so verdicts settle within two minutes
sed -e 's/^stable_period: .*/stable_period: 30s          # demo only: shipped default 1h/' \
  "${CRITERIA:-config/criteria.yaml}" > "$DEMO/criteria.yaml"
ALERTING=""
if [ -n "$AM_BIN" ]; then ALERTING="alerting: {alertmanager_url: 'http://127.0.0.1:$AM_PORT', resend_interval: 30s}"; fi
cat > "$DEMO/collector.yaml" <<YAML
listen: 127.0.0.1:$PORT
data_dir: $DEMO/collector
aggregator: {interval: 5s}
judge: {interval: 10s, criteria_file: $DEMO/criteria.yaml}
$ALERTING
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

if [ -n "$AM_BIN" ]; then
  echo "== starting Alertmanager on 127.0.0.1:$AM_PORT (log: $DEMO/alertmanager.log) =="
  mkdir -p "$DEMO/am"
  # the shipped routes and inhibit rules, delivering nowhere (its receivers name webhooks and SMTP)
  $BIN/python - "$DEMO/am/alertmanager.yml" <<'PY'
import sys, yaml
config = yaml.safe_load(open("deploy/alertmanager/alertmanager.yml", encoding="utf-8"))
config.pop("global", None)
config["receivers"] = [{"name": r["name"]} for r in config["receivers"]]
open(sys.argv[1], "w", encoding="utf-8").write(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
PY
  cp -r deploy/alertmanager/templates "$DEMO/am/"
  "$AM_BIN" --config.file="$DEMO/am/alertmanager.yml" --storage.path="$DEMO/am/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= > "$DEMO/alertmanager.log" 2>&1 &
  pids+=($!)
fi

echo "== starting the fleet simulator: $(( $(wc -l < "$DEMO/inventory.csv") - 1 )) communes (log: $DEMO/simulate.log) =="
$BIN/commune-collector simulate run --config "$DEMO/collector.yaml" --url "$URL" --exclude "$SITE" \
  --truth "$DEMO/truth.json" > "$DEMO/simulate.out" 2> "$DEMO/simulate.log" &
pids+=($!)
for _ in $(seq 1 900); do
  grep -q '^ground truth' "$DEMO/simulate.out" 2>/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "the simulator exited:"; tail -20 "$DEMO/simulate.log"; exit 1; }
  sleep 0.2
done
sed -n '/^simulated fleet/,/^ground truth/p' "$DEMO/simulate.out"

cat <<TXT

  sign in            $URL/login  with the operator token: $OPERATOR_TOKEN
                     (API: curl -H "Authorization: Bearer \$(cat $DEMO/operator.token)" $URL/api/v1/sites)
  status page        $URL/
  API docs           $URL/docs
  sites (Hà Nội)     $URL/api/v1/sites?province=ha-noi
  the demo site      $URL/api/v1/sites/$SITE
  collector metrics  $URL/metrics
  agent metrics      http://127.0.0.1:9469/metrics

The simulator first sends a day of history (about a minute), then reports live every 30 s;
the national page shows completed, failing, waiting and never-reported communes, the upstream
outage and the communes in declared maintenance ("Bảo trì") within two minutes. Compare the verdicts with the simulator's ground truth:
  $BIN/commune-collector simulate check --truth $DEMO/truth.json --url $URL --token-file $DEMO/operator.token
TXT
if [ -n "$AM_BIN" ]; then
  cat <<TXT
  alerts             http://127.0.0.1:$AM_PORT/#/alerts  (the upstream outage: one CommuneUpstreamOutage;
                     amtool --alertmanager.url=http://127.0.0.1:$AM_PORT alert query alertname=CommuneUpstreamOutage)
  maintenance        the communes in maintenance (above) are silenced for exactly their window:
                     amtool --alertmanager.url=http://127.0.0.1:$AM_PORT silence query
TXT
fi
echo "The agent pushes every 10 s; its site shows its latest checks within ~20 s. Ctrl-C stops everything."
wait -n "${pids[@]}"
echo "a process exited; see $DEMO/*.log"
