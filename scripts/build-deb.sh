#!/usr/bin/env bash
# Build the commune-agent .deb for one Debian release, against that release's own Python.
#
#   scripts/build-deb.sh bookworm          # -> dist/deb/commune-agent_0.1.0-1~deb12_amd64.deb
#   scripts/build-deb.sh trixie            # -> dist/deb/commune-agent_0.1.0-1~deb13_amd64.deb
#
# How (the properties of dh-virtualenv, with dpkg-deb and no build toolchain in the root):
#   1. a bare root of the release (debootstrap minbase + python3), cached in /var/tmp and copied;
#   2. on this machine, pip fetches the agent's wheels for that release's Python version and
#      architecture (the only step that needs the package index);
#   3. inside the root, that release's python3 makes a virtualenv at /opt/commune-agent (no pip
#      left inside), installs the wheels offline and byte-compiles them; the collector's code is
#      removed, so the package holds the agent and exactly its libraries;
#   4. dpkg-deb packs it with the hardened unit, the example config and the maintainer scripts
#      (deploy/deb/): system user, /etc/commune-agent, /var/lib/commune-agent; remove keeps config,
#      token and spool, purge deletes them.
# Must run as root (chroot). Env: OUT (default dist/deb), VERSION (default: pyproject's),
# REVISION (default 1), ARCH (default amd64; arm64 on amd64 needs qemu-user-static, whose
# binfmt_misc registration this script loads when missing: see docs/deploy.md), PIP (default:
# .venv/bin/pip).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${1:-bookworm}
ARCH=${ARCH:-amd64}
OUT=${OUT:-dist/deb}
PIP=${PIP:-.venv/bin/pip}
REVISION=${REVISION:-1}
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' pyproject.toml)}
case "$SUITE" in
  bookworm) DEBIAN_VERSION=12 ;;
  trixie) DEBIAN_VERSION=13 ;;
  *) echo "build-deb: unknown suite $SUITE (bookworm or trixie)" >&2; exit 2 ;;
esac
case "$ARCH" in
  amd64) PLATFORMS=(manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64) ;;
  arm64) PLATFORMS=(manylinux_2_34_aarch64 manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64) ;;
  *) echo "build-deb: unknown architecture $ARCH (amd64 or arm64)" >&2; exit 2 ;;
esac
DEB_VERSION="$VERSION-$REVISION~deb$DEBIAN_VERSION"
ROOT_CACHE=/var/tmp/commune-deb-root-$SUITE
[ "$ARCH" = amd64 ] || ROOT_CACHE="$ROOT_CACHE-$ARCH"
log() { echo "build-deb[$SUITE/$ARCH]: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (it builds inside a chroot)"; exit 1; }

# The bare root: minbase + python3, nothing else (also what tests/test_deb.py installs into).
ensure_root() {
  [ -x "$ROOT_CACHE/usr/bin/python3" ] && return 0
  command -v debootstrap >/dev/null || { log "needs debootstrap (apt-get install debootstrap)"; exit 1; }
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "debootstrap $SUITE ($ARCH) into $ROOT_CACHE (once; a few minutes)"
  rm -rf "$ROOT_CACHE.new"
  debootstrap --variant=minbase --arch="$ARCH" --include=python3 "$SUITE" "$ROOT_CACHE.new" "$mirror" \
    >"/var/tmp/commune-deb-debootstrap-$SUITE-$ARCH.log" 2>&1 \
    || { log "debootstrap failed: see /var/tmp/commune-deb-debootstrap-$SUITE-$ARCH.log"; exit 1; }
  mv "$ROOT_CACHE.new" "$ROOT_CACHE"
}

# A foreign architecture's programs run under qemu-user: the static emulator registered with the
# kernel's binfmt_misc with the F flag (opened once, so it also works inside the chroot).
# Debian's qemu-user-static ships the registration; without systemd it is never loaded, so do it.
ensure_emulation() {
  local host qarch conf binfmt=/proc/sys/fs/binfmt_misc
  host=$(dpkg --print-architecture)
  [ "$ARCH" = "$host" ] && return 0
  case "$ARCH" in arm64) qarch=aarch64 ;; *) qarch=$ARCH ;; esac
  conf=/usr/lib/binfmt.d/qemu-$qarch.conf
  if [ ! -x "/usr/bin/qemu-$qarch-static" ] || [ ! -f "$conf" ]; then
    log "building for $ARCH on $host needs qemu-user-static (apt-get install qemu-user-static)"; exit 1
  fi
  [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" \
    || { log "cannot mount binfmt_misc on $binfmt (the kernel needs CONFIG_BINFMT_MISC)"; exit 1; }
  [ -e "$binfmt/qemu-$qarch" ] || cat "$conf" > "$binfmt/register" \
    || { log "cannot register $conf with binfmt_misc"; exit 1; }
  grep -qx enabled "$binfmt/qemu-$qarch" || { log "binfmt_misc has qemu-$qarch disabled"; exit 1; }
}

ensure_emulation
ensure_root
WORK=$(mktemp -d /var/tmp/commune-deb-build-XXXXXX)
trap 'rm -rf --one-file-system "$WORK"' EXIT
log "copying the $SUITE root"
cp -a "$ROOT_CACHE" "$WORK/root"
R=$WORK/root
# in the root: its own environment only (this machine's PIP_* settings must not leak in)
inroot() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
PYVER=$(inroot /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "$SUITE's Python is $PYVER"

log "fetching the agent's wheels for Python $PYVER ($ARCH)"
WHEELS=$R/tmp/wheels
mkdir -p "$WHEELS"
"$PIP" wheel -q --no-deps --disable-pip-version-check -w "$WHEELS" . >"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; log "building the project's wheel failed"; exit 1; }
PROJECT_WHEEL=$(find "$WHEELS" -name 'commune_monitor-*.whl' -print -quit)
[ -n "$PROJECT_WHEEL" ] || { log "building the project's wheel failed"; exit 1; }
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PIP" download -q --disable-pip-version-check --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${platform_args[@]}" -d "$WHEELS" "$PROJECT_WHEEL" pip >>"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; log "downloading the wheels failed"; exit 1; }
PIP_WHEEL=$(find "$WHEELS" -name 'pip-*.whl' -print -quit)
[ -n "$PIP_WHEEL" ] || { log "downloading the wheels failed"; exit 1; }

log "virtualenv /opt/commune-agent with $SUITE's python3, offline"
inroot /usr/bin/python3 -m venv --without-pip /opt/commune-agent
inroot /opt/commune-agent/bin/python "/tmp/wheels/$(basename "$PIP_WHEEL")/pip" install -q \
  --no-index --find-links /tmp/wheels --no-compile --disable-pip-version-check "/tmp/wheels/$(basename "$PROJECT_WHEEL")"
SITE=$(echo "$R"/opt/commune-agent/lib/python*/site-packages)
rm -rf "$SITE/commune_collector" "$R/opt/commune-agent/bin/commune-collector"  # the agent's package only
inroot /opt/commune-agent/bin/python -m compileall -q /opt/commune-agent/lib >/dev/null
inroot /opt/commune-agent/bin/commune-agent --version >&2

log "packing"
PKG=$WORK/pkg
mkdir -p "$PKG/opt" "$PKG/usr/bin" "$PKG/DEBIAN"
cp -a "$R/opt/commune-agent" "$PKG/opt/"
ln -s /opt/commune-agent/bin/commune-agent "$PKG/usr/bin/commune-agent"
install -D -m 0644 deploy/systemd/commune-agent.service "$PKG/usr/lib/systemd/system/commune-agent.service"
install -D -m 0644 config/agent.example.yaml "$PKG/usr/share/doc/commune-agent/examples/agent.example.yaml"
# a conffile, so that `remove` leaves the package in config-files state and only `purge` runs postrm purge
install -D -m 0644 deploy/deb/etc-README "$PKG/etc/commune-agent/README"
echo /etc/commune-agent/README > "$PKG/DEBIAN/conffiles"
install -m 0755 deploy/deb/postinst deploy/deb/prerm deploy/deb/postrm "$PKG/DEBIAN/"
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@PYTHON@/python$PYVER/g" -e "s/@SUITE@/Debian $DEBIAN_VERSION ($SUITE)/" \
    deploy/deb/control.in > "$PKG/DEBIAN/control"
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
mkdir -p "$OUT"
DEB="$OUT/commune-agent_${DEB_VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >/dev/null
log "built $DEB ($(du -h "$DEB" | cut -f1), installed $((SIZE / 1024)) MiB)"
echo "$DEB"
