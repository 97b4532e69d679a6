"""snmpsim serving a chosen subset of real device recordings on one UDP port.

``snmpsim-data`` ships ~116 recordings of real devices (UPS, routers,
switches, PDUs...).  Indexing all of them takes minutes and ~800 MB, so the
harness serves a small *subset*: the chosen files are decompressed once into a
persistent data dir under the user cache, and snmpsim's index lives next to
it.  snmpsim names index files after the absolute path of each data file and
rebuilds them only when the data file is newer, so a stable data dir is what
makes the second start take about a second instead of many.

Each device answers on its own community: the data file's path under the data
dir without ``.snmprec`` (e.g. ``UPS/eaton-93e-80``).  An unknown community
gets silence, not an error, which is why readiness checks every community.

Cache location: ``$COMMUNE_MONITOR_CACHE`` or ``$XDG_CACHE_HOME/commune-monitor``
or ``~/.cache/commune-monitor``.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ._base import (
    Peer,
    PeerError,
    free_udp_port,
    peer_fixture,
    require_binary,
    run_tool,
    udp_port_bound,
    wait_until,
)
from ._snmpcli import cli_env, snmp_get, v2c_args

DATA_DIR = Path(__file__).with_name("data")

#: recordings from snmpsim-data, role -> path under its data dir (no suffix)
RECORDED_DEVICES: dict[str, str] = {
    # Eaton 93E 80 kVA: RFC 1628 UPS-MIB (upsEstimatedChargeRemaining...), 2 ifs
    "ups": "UPS/eaton-93e-80",
    # Juniper MX960 (JUNOS 13.3R9): 61 ifTable/ifXTable rows, ifNumber says 143
    "router": "network/router/juniper-mx960-13-3r9-13",
    # Cisco Catalyst 3560 (IOS 12.2(55)SE3): 57 ifTable rows, 56 ifXTable rows
    "switch": "network/switch/cisco-c3560",
    # APC AP7902B rack PDU: PowerNet rPDU/rPDU2 tables, no upsBasic/upsAdv
    "apc_pdu": "UPS/apc-7902b",
}

#: recordings that exist but are not served by default (slow first index)
OPTIONAL_RECORDINGS: dict[str, str] = {
    # the router recording with the most interfaces: 395 ifTable rows, no
    # ifXTable (32-bit counters only); 577k lines, ~1 min to index first time
    "router_ruijie": "network/router/ruijie-n18010",
    # the MX960 recording with the most interfaces: 91 rows (ifNumber 419)
    "router_mx960_91": "network/router/juniper-mx960-16-1r6-7-a",
}

#: our own hand-written recordings (testsupport/peers/data), role -> file
LOCAL_DEVICES: dict[str, Path] = {
    # HP Color LaserJet: Printer-MIB supplies (magenta at 4%), hrPrinterStatus
    "printer": DATA_DIR / "printer-hp.snmprec",
    # APC Smart-UPS 1500 (AP9631 card): PowerNet-MIB upsBasic/upsAdv, on line
    "apc_ups": DATA_DIR / "apc-smart-ups.snmprec",
}

DEFAULT_DEVICES: dict[str, str | Path] = {**RECORDED_DEVICES, **LOCAL_DEVICES}

IF_INDEX_PREFIX = "1.3.6.1.2.1.2.2.1.1."
SNMPREC = ".snmprec"


@dataclass(frozen=True)
class SimDevice:
    """One simulated device: its community and what the recording contains."""

    role: str
    community: str
    data_file: Path
    if_count: int
    probe_oid: str


# --------------------------------------------------------------------------
# cache and data preparation


def cache_root() -> Path:
    """Persistent cache shared by runs and repo clones on this machine."""
    explicit = os.environ.get("COMMUNE_MONITOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "commune-monitor"


def _tool(name: str) -> str:
    """Prefer the console script of *this* interpreter over PATH (pyenv shims)."""
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return require_binary(name)


def _snmpsim_data_version() -> str:
    try:
        return importlib.metadata.version("snmpsim-data")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def recordings_dir() -> Path:
    """The full snmpsim-data set, unpacked once by ``setup-snmpsim-data``.

    A marker holding the package version makes this a no-op on later runs
    and redoes it after an upgrade of snmpsim-data.
    """
    target = cache_root() / "snmpsim-data"
    marker = target / ".installed-version"
    version = _snmpsim_data_version()
    if marker.is_file() and marker.read_text().strip() == version:
        return target
    target.mkdir(parents=True, exist_ok=True)
    run_tool([_tool("setup-snmpsim-data"), str(target)], timeout=300)
    marker.write_text(version + "\n")
    return target


def _recording_source(relpath: str) -> Path:
    base = recordings_dir()
    for suffix in (SNMPREC, SNMPREC + ".bz2"):
        candidate = base / (relpath + suffix)
        if candidate.is_file():
            return candidate
    raise PeerError(f"no recording {relpath!r} in {base}")


def _atomic_write(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(dest)


def _materialise_recording(relpath: str, dest: Path) -> None:
    """Decompress a recording once; snmpsim seeks in plain text much faster.

    Existing files are left untouched so their mtime stays older than the
    index and snmpsim reuses it.
    """
    if dest.is_file():
        return
    source = _recording_source(relpath)
    raw = source.read_bytes()
    _atomic_write(dest, bz2.decompress(raw) if source.suffix == ".bz2" else raw)


def _materialise_local(source: Path, dest: Path) -> None:
    """Copy our own file only when its content changed (triggers a reindex)."""
    data = Path(source).read_bytes()
    if dest.is_file() and dest.read_bytes() == data:
        return
    check_sorted(source)
    _atomic_write(dest, data)


def _community_for(spec: str | Path) -> str:
    if isinstance(spec, Path):
        return spec.name.removesuffix(SNMPREC)
    return spec.removesuffix(SNMPREC)


def _set_dir(devices: Mapping[str, str | Path]) -> Path:
    """A persistent data dir per selection of communities.

    Keyed by community and kind only (not by the repo path of local files) so
    every clone of the repo on this machine shares the same index.
    """
    key = sorted(
        (_community_for(spec), "local" if isinstance(spec, Path) else "rec")
        for spec in devices.values()
    )
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return cache_root() / "snmpsim" / "sets" / digest


def _scan(path: Path) -> tuple[int, str]:
    """(number of ifTable rows, first OID) of a data file."""
    if_count = 0
    first_oid = ""
    with path.open(errors="replace") as handle:
        for line in handle:
            if line.startswith("#"):
                continue  # some recordings start with a comment (e.g. "#EATON 93E 80")
            oid = line.split("|", 1)[0]
            if not first_oid and oid:
                first_oid = oid
            if oid.startswith(IF_INDEX_PREFIX):
                if_count += 1
    return if_count, first_oid


def prepare_devices(devices: Mapping[str, str | Path]) -> tuple[Path, dict[str, SimDevice]]:
    """Fill the persistent data dir for ``devices``; return it and the devices."""
    data_dir = _set_dir(devices)
    result: dict[str, SimDevice] = {}
    for role, spec in devices.items():
        community = _community_for(spec)
        dest = data_dir / (community + SNMPREC)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, Path):
            _materialise_local(spec, dest)
        else:
            _materialise_recording(spec, dest)
        if_count, probe_oid = _scan(dest)
        result[role] = SimDevice(role, community, dest, if_count, probe_oid)
    return data_dir, result


@contextlib.contextmanager
def _cache_lock(timeout: float) -> Iterator[None]:
    """Serialise data preparation and indexing between concurrent test runs.

    Two snmpsim processes building the same dbm index at once corrupt it; the
    lock is held until the simulator answers, i.e. until indexing is done.
    """
    lock_path = cache_root() / "snmpsim" / "lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:

        def try_lock() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(try_lock, timeout=timeout, interval=0.2, what=f"lock {lock_path}")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# .snmprec helpers for tests that need their own devices


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip(".").split("."))


def read_snmprec(path: Path) -> list[tuple[str, str, str]]:
    """Parse a plain .snmprec into (oid, tag, value) triples."""
    records = []
    # surrogateescape: some recordings hold strings that are not UTF-8; they round-trip byte for byte
    for line in Path(path).read_text(errors="surrogateescape").splitlines():
        if line.strip() and not line.startswith("#"):
            oid, tag, value = line.split("|", 2)
            records.append((oid, tag, value))
    return records


def write_snmprec(path: Path, records: Iterable[tuple[str, int | str, object]]) -> Path:
    """Write records sorted by numeric OID, which snmpsim's GETNEXT relies on."""
    rows = sorted(
        ((oid.strip("."), str(tag), str(v)) for oid, tag, v in records),
        key=lambda row: _oid_key(row[0]),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{o}|{t}|{v}\n" for o, t, v in rows), errors="surrogateescape")
    return Path(path)


def snmprec_variant(
    source: Path, dest: Path, overrides: Mapping[str, tuple[int | str, object]]
) -> Path:
    """Copy ``source`` with some OIDs set to (tag, value), e.g. a UPS on battery.

    Example: ``snmprec_variant(LOCAL_DEVICES["apc_ups"], tmp / "apc-onbatt.snmprec",
    {"1.3.6.1.4.1.318.1.1.1.4.1.1.0": (2, 3)})`` (upsBasicOutputStatus onBattery).
    """
    merged = {oid: (tag, value) for oid, tag, value in read_snmprec(source)}
    merged.update({oid.strip("."): tv for oid, tv in overrides.items()})
    return write_snmprec(dest, [(oid, tag, value) for oid, (tag, value) in merged.items()])


def check_sorted(path: Path) -> None:
    """Raise PeerError when a .snmprec is unsorted (snmpsim would misbehave)."""
    previous: tuple[int, ...] = ()
    for number, (oid, _, _) in enumerate(read_snmprec(path), start=1):
        key = _oid_key(oid)
        if key <= previous:
            raise PeerError(f"{path}:{number}: OID {oid} is not after the previous one")
        previous = key


# --------------------------------------------------------------------------
# the peer


class SnmpsimPeer(Peer):
    """snmpsim-command-responder on 127.0.0.1:<free UDP port>.

    ``devices`` maps a role to a recording path (``str``, under snmpsim-data)
    or to a local ``.snmprec`` file (``Path``); default :data:`DEFAULT_DEVICES`.
    ``extra_devices`` is merged on top, to add one device without re-listing.
    After start, ``devices[role]`` is a :class:`SimDevice` and
    ``community(role)`` its community string.
    """

    name = "snmpsim"
    #: indexing new recordings can take minutes the first time (cached after)
    index_timeout = 600.0

    def __init__(
        self,
        *,
        devices: Mapping[str, str | Path] | None = None,
        extra_devices: Mapping[str, str | Path] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self._specs: dict[str, str | Path] = {
            **(DEFAULT_DEVICES if devices is None else devices),
            **(extra_devices or {}),
        }
        if not self._specs:
            raise PeerError("snmpsim needs at least one device")
        self.devices: dict[str, SimDevice] = {}
        self.data_dir: Path | None = None
        self.index_dir = cache_root() / "snmpsim" / "index"
        self._cli_env = cli_env(self.dir / "client")

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{self.host}:{self.port}"

    def community(self, role: str) -> str:
        """Community string serving the device registered under ``role``."""
        return self.devices[role].community

    def start(self) -> Self:
        """Start under the cache lock so concurrent runs never index twice."""
        with _cache_lock(self.index_timeout):
            super().start()
        return self

    def _check_requirements(self) -> None:
        _tool("snmpsim-command-responder")
        require_binary("snmpget")
        if any(isinstance(spec, str) for spec in self._specs.values()):
            _tool("setup-snmpsim-data")

    def _prepare(self) -> None:
        self.port = free_udp_port()
        if self.data_dir is None:
            self.data_dir, self.devices = prepare_devices(self._specs)
        self.index_dir.mkdir(parents=True, exist_ok=True)

    def _launch(self) -> None:
        assert self.data_dir is not None
        self._spawn(
            [
                _tool("snmpsim-command-responder"),
                f"--data-dir={self.data_dir}",
                f"--cache-dir={self.index_dir}",
                f"--agent-udpv4-endpoint={self.address}",
            ],
            env={"SNMPSIM_ALLOW_ROOT": "true"},
        )
        self.wait_ready(
            lambda: udp_port_bound(self.port),
            what="snmpsim to index its data and bind its port",
            timeout=self.index_timeout,
        )

    def _is_ready(self) -> bool:
        """Every community must answer: a missing file would only give silence.

        The first request to a device makes snmpsim open its index, which takes
        up to a second or so for big recordings; a generous per-request timeout
        without retries avoids piling retransmissions onto that work.
        """
        for device in self.devices.values():
            self._get_raw(device.community, device.probe_oid, timeout=5.0, retries=0)
        return True

    def get(self, role: str, oid: str, *, timeout: float = 1.0, retries: int = 1) -> str:
        """GET one OID from the device registered under ``role`` (v2c)."""
        return self._get_raw(self.community(role), oid, timeout=timeout, retries=retries)

    def _get_raw(self, community: str, oid: str, *, timeout: float = 1.0, retries: int = 1) -> str:
        return snmp_get(
            self.address,
            oid,
            v2c_args(community),
            env=self._cli_env,
            timeout=timeout,
            retries=retries,
        )


def snmpsim_fixture(
    *, scope: str = "session", name: str | None = None, **kwargs: Any
) -> Callable[..., Iterator[SnmpsimPeer]]:
    """A pytest fixture yielding a started :class:`SnmpsimPeer` (kwargs go to it)."""
    return peer_fixture(lambda: SnmpsimPeer(**kwargs), scope=scope, name=name)


def clear_cache() -> None:
    """Remove the snmpsim index and data sets (not the unpacked recordings)."""
    shutil.rmtree(cache_root() / "snmpsim", ignore_errors=True)
