#!/usr/bin/env bash
# Install (or upgrade) commune-agent on a commune site box.
#
#   sudo deploy/install-agent.sh --config ha-noi-ba-dinh.yaml --token-file token.txt
#
# What it does, in order, stopping at the first problem:
#   1. creates the system user commune-agent (no login, no home)
#   2. creates or upgrades the virtualenv /opt/commune-agent with the agent in it
#   3. validates the config with `commune-agent check-config` BEFORE putting it in place
#   4. installs /etc/commune-agent/agent.yaml (root:commune-agent 0640) and the site
#      token /etc/commune-agent/token (commune-agent 0600)
#   5. installs the hardened systemd unit, enables and (re)starts it
# Run it again to upgrade: the config and token are replaced only when given.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=/
CONFIG=""
TOKEN_FILE=""
SOURCE=""
WHEELHOUSE=""
PACKAGE="commune-monitor"
PYTHON=python3
USER_NAME=commune-agent
SYSTEMD=1
PREFIX=/opt/commune-agent
ETC=/etc/commune-agent
STATE=/var/lib/commune-agent
UNIT_DIR=/etc/systemd/system

usage() {
  cat <<EOF
Usage: $PROG --config FILE [options]

Install or upgrade commune-agent on this box: user, virtualenv, config, token, systemd unit.

  --config FILE        the site's agent YAML (e.g. from: commune-collector agent-config SITE);
                       it is checked with 'commune-agent check-config' before it is installed
  --token-file FILE    file holding the site's token (from: commune-collector token issue SITE);
                       '-' reads it from standard input. Never pass a token on the command line.
  --source DIR         install the agent from this source tree (default: the checkout holding
                       this script, when it has a pyproject.toml)
  --wheelhouse DIR     install offline from a directory of wheels (pip --no-index); for
                       sites on metered links, build it once with: pip wheel . -w DIR
  --package SPEC       what pip installs from the wheelhouse or index (default: $PACKAGE)
  --python PYTHON      Python 3.11+ used for the virtualenv (default: $PYTHON)
  --root DIR           install under DIR instead of / (a scratch root for tests and image
                       staging); systemd is only told to enable the unit there, not to start it
  --no-systemd         do not install the unit or call systemctl (containers, boxes without systemd)
  -h, --help           this help

Paths: $PREFIX (virtualenv), $ETC (config, token), $STATE (spool), $UNIT_DIR/commune-agent.service
EOF
}

say() { printf '==> %s\n' "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --token-file) TOKEN_FILE=${2:?--token-file needs a file}; shift 2 ;;
    --source) SOURCE=${2:?--source needs a directory}; shift 2 ;;
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a directory}; shift 2 ;;
    --package) PACKAGE=${2:?--package needs a requirement}; shift 2 ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ -n "$CONFIG" ] || { usage >&2; die "--config is required"; }
[ -f "$CONFIG" ] || die "--config $CONFIG: no such file"
[ -z "$TOKEN_FILE" ] || [ "$TOKEN_FILE" = - ] || [ -f "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE: no such file"
[ -z "$WHEELHOUSE" ] || [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such directory"
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
[ "$ROOT" != / ] || [ "$(id -u)" = 0 ] || die "run as root (or give --root DIR for a scratch install)"
if [ -z "$SOURCE" ] && [ -z "$WHEELHOUSE" ]; then
  [ -f "$HERE/../pyproject.toml" ] || die "give --source DIR or --wheelhouse DIR (no checkout next to this script)"
  SOURCE=$(cd "$HERE/.." && pwd)
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || die "$PYTHON is not Python 3.11 or newer (use --python)"
R=${ROOT%/}  # prefix for every path; empty when installing to /

# -- 1. user ---------------------------------------------------------------------------
passwd_of() { getent -s files passwd "$1" 2>/dev/null || true; }
ensure_user() {
  local prefix_args=()
  if [ -n "$R" ]; then
    # a scratch root gets minimal account files (never a copy of this host's hashes)
    mkdir -p "$R/etc"
    [ -e "$R/etc/passwd" ] || echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
    [ -e "$R/etc/group" ] || echo 'root:x:0:' > "$R/etc/group"
    [ -e "$R/etc/shadow" ] || (umask 077; echo 'root:*:1::::::' > "$R/etc/shadow")
    [ -e "$R/etc/gshadow" ] || (umask 077; echo 'root:*::' > "$R/etc/gshadow")
    prefix_args=(--prefix "$R")
    grep -q "^$USER_NAME:" "$R/etc/passwd" && return 0
  else
    [ -n "$(passwd_of "$USER_NAME")" ] && return 0
  fi
  say "creating system user $USER_NAME"
  useradd "${prefix_args[@]}" --system --user-group --home-dir "$STATE" --no-create-home \
    --shell /usr/sbin/nologin --comment "commune-agent probe" "$USER_NAME"
}
ensure_user
UID_GID=$(awk -F: -v u="$USER_NAME" '$1 == u {print $3 ":" $4}' "$R/etc/passwd")
[ -n "$UID_GID" ] || die "user $USER_NAME missing from $R/etc/passwd"
CAN_CHOWN=1; [ "$(id -u)" = 0 ] || CAN_CHOWN=0
own() { if [ "$CAN_CHOWN" = 1 ]; then chown "$1" "$2"; fi; }

# -- 2. virtualenv -----------------------------------------------------------------------
say "installing the agent into $R$PREFIX"
[ -x "$R$PREFIX/bin/python" ] || "$PYTHON" -m venv "$R$PREFIX"
PIP=("$R$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade)
if [ -n "$WHEELHOUSE" ]; then
  "${PIP[@]}" --no-index --find-links "$WHEELHOUSE" "$PACKAGE"
else
  "${PIP[@]}" "$SOURCE"
fi
AGENT="$R$PREFIX/bin/commune-agent"
"$AGENT" --version

# -- 3. check the config before it goes anywhere ---------------------------------------
say "checking $CONFIG"
CHECKED=$("$AGENT" check-config --without-token "$CONFIG") || die "$CONFIG does not validate; nothing was changed in $R$ETC"
echo "$CHECKED"
PUSHES=0; case "$CHECKED" in *"pushes to "*) PUSHES=1 ;; esac
if [ "$PUSHES" = 1 ] && [ -z "$TOKEN_FILE" ] && [ ! -s "$R$ETC/token" ]; then
  die "$CONFIG pushes to a collector but no token is installed: give --token-file FILE (or - to read it from stdin); nothing was changed in $R$ETC"
fi

# -- 4. config and token -----------------------------------------------------------------
say "installing $R$ETC/agent.yaml"
install -d -m 0750 "$R$ETC"
own "root:${UID_GID#*:}" "$R$ETC"
install -m 0640 "$CONFIG" "$R$ETC/agent.yaml.new"
own "root:${UID_GID#*:}" "$R$ETC/agent.yaml.new"
mv -f "$R$ETC/agent.yaml.new" "$R$ETC/agent.yaml"
if [ -n "$TOKEN_FILE" ]; then
  say "installing the site token in $R$ETC/token (mode 0600)"
  umask 077
  if [ "$TOKEN_FILE" = - ]; then cat > "$R$ETC/token.new"; else cat "$TOKEN_FILE" > "$R$ETC/token.new"; fi
  [ -s "$R$ETC/token.new" ] || { rm -f "$R$ETC/token.new"; die "the token is empty"; }
  chmod 0600 "$R$ETC/token.new"
  own "$UID_GID" "$R$ETC/token.new"
  mv -f "$R$ETC/token.new" "$R$ETC/token"
elif [ "$PUSHES" = 0 ]; then
  say "the config has no collector: section: this agent serves /metrics and pushes nothing"
fi
install -d -m 0750 "$R$STATE"
own "$UID_GID" "$R$STATE"

# -- 5. systemd --------------------------------------------------------------------------
if [ "$SYSTEMD" = 0 ]; then
  say "done (no systemd): run $PREFIX/bin/commune-agent run --config $ETC/agent.yaml as $USER_NAME"
  exit 0
fi
say "installing $R$UNIT_DIR/commune-agent.service"
install -d "$R$UNIT_DIR"
install -m 0644 "$HERE/systemd/commune-agent.service" "$R$UNIT_DIR/commune-agent.service"
if [ -n "$R" ]; then
  systemctl --root="$R" enable commune-agent.service
  say "done: enabled under $R (not started: it is not this machine's root)"
else
  systemctl daemon-reload
  systemctl enable commune-agent.service
  systemctl restart commune-agent.service
  say "done: $(systemctl is-active commune-agent.service); follow it with: journalctl -u commune-agent -f"
fi
