#!/usr/bin/env bash
# Install the Debian packages whose programs the test suite runs as real peers
# (see testsupport/peers/README.md). Idempotent: a quick no-op when every
# package is already installed. Must run as root on Debian 12.
#
# Services must not start on install: the tests start their own copies on
# random loopback ports. A policy-rc.d that denies starts (exit 101) is put in
# place for the install when the machine has none, and removed afterwards;
# daemons that still came up on their default ports are then stopped.
#
# Env: EXTRA_PACKAGES="a b" adds packages; APT_SIMULATE=1 passes -s to apt-get.
#
# Under errexit + pipefail a pipeline whose filter finds nothing (grep with no
# match, a tool that is absent or fails) stops the script. On a fresh machine
# "nothing found" is the normal case, so every lookup that may legitimately
# find nothing captures its command's output first and parses it without a
# pipeline (tests/test_scripts.py runs them on a machine where nothing listens).
set -euo pipefail

PACKAGES=(
  snmpd snmp                       # Net-SNMP agent and CLI clients
  nut-server nut-client            # dummy-ups + upsd, upsc/upsrw
  prometheus                       # prometheus + promtool
  prometheus-alertmanager
  prometheus-blackbox-exporter
  prometheus-snmp-exporter
  fping
  postgresql
  nftables iputils-ping iproute2   # netns link emulation tests
  dnsutils                         # dig
  dnsmasq-base                     # a real DNS server for the dns probe tests (no service)
  util-linux                       # setpriv: drop CAP_NET_RAW to test unprivileged ICMP
  chromium                         # web page screenshots
  systemd                          # systemd-analyze verify/security, systemctl --root (deploy/ tests)
  docker-compose                   # validates deploy/docker/compose.yaml offline (no engine needed)
  shellcheck                       # lints deploy/install-agent.sh and scripts/
  libatomic1                       # Playwright's bundled node needs it; a minimal Debian lacks it
  debootstrap                      # bare Debian 12/13 roots: build and install-test the agent's .deb
  dpkg-dev apt-utils gnupg         # the province's apt repository: deploy/apt/update-repo.sh, tests/test_deb_repo.py
  nginx                            # the single-sign-on reverse proxy in front of the collector (deploy/nginx)
)
# chromium is installed with its Recommends (fonts etc.) so pages render.
WITH_RECOMMENDS=(chromium)
read -r -a EXTRA <<<"${EXTRA_PACKAGES:-}"
PACKAGES+=("${EXTRA[@]}")

POLICY=/usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
[[ "${APT_SIMULATE:-}" == 1 ]] && APT_OPTS+=(-s)

log() { echo "install-test-deps: $*" >&2; }

missing_packages() {  # one dpkg-query for all: the no-op path stays fast
  local installed pkg
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null \
    | awk '$2 == "installed" {print $1}' || true)
  for pkg in "${PACKAGES[@]}"; do
    grep -qxF "$pkg" <<<"$installed" || echo "$pkg"
  done
}

in_list() {
  local needle=$1 item
  shift
  for item in "$@"; do [[ "$item" == "$needle" ]] && return 0; done
  return 1
}

block_service_starts() {
  # Only take over policy-rc.d when there is none (Docker images ship one).
  if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\n# temporary, from scripts/install-test-deps.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
    log "service starts blocked during install ($POLICY)"
  fi
}

apt_install() {
  local plain=() recommends=() pkg
  for pkg in "$@"; do
    if in_list "$pkg" "${WITH_RECOMMENDS[@]}"; then recommends+=("$pkg"); else plain+=("$pkg"); fi
  done
  if ((${#plain[@]})); then
    apt-get install "${APT_OPTS[@]}" --no-install-recommends "${plain[@]}"
  fi
  if ((${#recommends[@]})); then
    apt-get install "${APT_OPTS[@]}" "${recommends[@]}"
  fi
}

# PID of whatever listens on a local port ("tcp"/"udp"), empty if none (status 0 either way).
listener_pid() {
  local out
  command -v ss >/dev/null || return 0
  out=$(ss -Hlnp "--$1" "sport = :$2" 2>/dev/null) || return 0
  if [[ $out =~ pid=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; fi
  return 0
}

# "version name status" of each PostgreSQL cluster, nothing when there is none.
pg_clusters() {
  local out
  command -v pg_lsclusters >/dev/null || return 0
  out=$(pg_lsclusters -h 2>/dev/null) || return 0
  awk '{print $1, $2, $4}' <<<"$out"
}

stop_default_port_daemons() {
  # The packages' own clusters/daemons, on their default ports only: test
  # peers use random high ports and are never touched.
  local ver name status spec proto port pid
  while read -r ver name status; do
    if [[ "$status" == online ]]; then
      log "stopping PostgreSQL cluster $ver/$name left running by the install"
      pg_ctlcluster "$ver" "$name" stop || true
    fi
  done < <(pg_clusters)
  for spec in udp:161 tcp:199 tcp:3493 tcp:5432 tcp:9090 tcp:9093 tcp:9094 tcp:9100 \
              tcp:9115 tcp:9116 tcp:80; do
    proto=${spec%%:*} port=${spec##*:}
    pid=$(listener_pid "$proto" "$port")
    if [[ -n "$pid" ]]; then
      log "stopping $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') (pid $pid) on default $spec"
      kill -TERM "$pid" 2>/dev/null || true
      wait_gone "$pid"
    fi
  done
}

wait_gone() {  # poll up to 10 s for a PID to exit, then SIGKILL it
  local pid=$1 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

main() {
  if [[ "$(id -u)" != 0 ]]; then
    log "must run as root (apt-get install)"
    exit 1
  fi
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} packages present"
    return 0
  fi
  log "installing: ${missing[*]}"
  block_service_starts
  apt-get update -q
  apt_install "${missing[@]}"
  [[ "${APT_SIMULATE:-}" == 1 ]] && return 0
  stop_default_port_daemons
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]})); then
    log "still missing after install: ${missing[*]}"
    exit 1
  fi
  log "done"
}

# Sourced (by tests/test_scripts.py) it only defines the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
