"""``commune-agent check-collector``: does the center hear this site? One step at a time, each with its fix.

An installer at a commune office needs one answer before leaving: the
collector receives this site's reports. Each step below depends on the one
before it (no TLS without a connection, no token check without TLS), so the
first failing step is the one to fix and the steps after it say what they
wait for. Every failing step carries the next action in plain words.

The report sent is empty (no results, so no made-up evidence) under an
instance id of its own (``check-<random>``), so it never meets the sequence
numbers of the running agent's spool. The collector's ``GET /api/v1/whoami``
says which site the token belongs to, whether it is in the inventory, the
collector's clock, and the last report it stored for the site.
"""

from __future__ import annotations

import gzip
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from commune_agent import __version__
from commune_agent.config import AgentConfig, PushSettings

WHOAMI_PATH = "/api/v1/whoami"
REPORTS_PATH = "/api/v1/reports"
CLOCK_WARN_S = 30.0  # the collector's default clock.warn_offset
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class Step:
    """One line of the table: ok True/False, or None when not checked because an earlier step failed."""

    name: str
    ok: bool | None
    detail: str
    action: str = ""


def read_token(settings: PushSettings) -> tuple[str, str]:
    """(the token, "") or ("", what is wrong with its file or variable); the token is never in the message."""
    if settings.token_file is not None:
        try:
            token = settings.token_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return "", f"{settings.token_file}: no such file"
        except (OSError, UnicodeDecodeError) as exc:
            return "", f"{settings.token_file}: cannot read: {exc}"
        return (token, "") if token else ("", f"{settings.token_file} is empty")
    token = os.environ.get(str(settings.token_env), "").strip()
    return (token, "") if token else ("", f"the environment variable {settings.token_env} is not set or empty")


class _Stop(Exception):
    """An earlier step failed; the later ones cannot be checked."""


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    base: str


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Target(parts.scheme, parts.hostname or "", port, url.rstrip("/"))


class CollectorCheck:
    """Runs the steps in order against the configured collector and collects one ``Step`` each."""

    def __init__(self, cfg: AgentConfig, *, timeout: float | None = None, clock: Callable[[], float] = time.time):
        assert cfg.collector is not None
        self.cfg = cfg
        self.settings: PushSettings = cfg.collector
        self.target = parse_target(self.settings.url)
        self.timeout = timeout or min(self.settings.timeout, 10.0)
        self.clock = clock
        self.steps: list[Step] = []
        self.token = ""
        self.instance = f"check-{secrets.token_hex(6)}"

    # -- the steps -------------------------------------------------------------------

    def run(self) -> list[Step]:
        """All steps; the first failure stops the ones that need it."""
        pending = ["resolved", "reached", "TLS", "token", "inventory", "clock", "report"]
        try:
            addresses = self.resolve()
            self.reach(addresses)
            context = self.tls()
            import httpx

            with httpx.Client(verify=context if context is not None else True, timeout=self.timeout,
                              headers={"User-Agent": f"commune-agent/{__version__} check-collector"}) as client:
                me = self.whoami(client)
                known = self.inventory(me)
                self.clock_offset(client)
                if known:
                    self.report(client)
        except _Stop:
            done = {s.name for s in self.steps}
            failed = self.steps[-1].name
            for name in pending:
                if name not in done:
                    self.steps.append(Step(name, None, f"not checked: needs {failed} first"))
        return self.steps

    def _fail(self, name: str, detail: str, action: str) -> None:
        self.steps.append(Step(name, False, detail, action))
        raise _Stop

    def resolve(self) -> list[str]:
        host, port = self.target.host, self.target.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            self._fail("resolved", f"cannot resolve {host!r}: {exc}",
                       f"check the host name in collector.url ({self.settings.url}) and this machine's DNS "
                       "(/etc/resolv.conf); try: getent hosts " + host)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        self.steps.append(Step("resolved", True, f"{host} -> {', '.join(addresses[:3])}"))
        return addresses

    def reach(self, addresses: list[str]) -> None:
        port = self.target.port
        errors = []
        for address in addresses:
            started = time.perf_counter()
            try:
                with socket.create_connection((address, port), timeout=self.timeout):
                    pass
            except OSError as exc:
                errors.append(f"{address}:{port}: {exc.strerror or exc}")
                continue
            took = (time.perf_counter() - started) * 1000
            self.steps.append(Step("reached", True, f"TCP {address} port {port} in {took:.0f} ms"))
            return
        self._fail("reached", "; ".join(errors),
                   "check that the collector runs and that the way to it is open (VPN, firewall, "
                   f"the port {port}); try: curl -v {self.target.base}/readyz")

    def tls(self) -> ssl.SSLContext | None:
        if self.target.scheme != "https":
            if self.target.host in LOOPBACK:
                self.steps.append(Step("TLS", True, "plain http on loopback (no TLS needed)"))
                return None
            self._fail("TLS", "plain http: the site token would cross the network in clear",
                       "use the collector's https:// URL in collector.url (and its CA in collector.ca_file)")
        ca = self.settings.ca_file
        try:
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
        except (OSError, ssl.SSLError) as exc:
            self._fail("TLS", f"collector.ca_file {ca}: not a readable PEM CA file: {exc}",
                       "copy the province's CA certificate (PEM) to collector.ca_file")
        try:
            with socket.create_connection((self.target.host, self.target.port), timeout=self.timeout) as sock, \
                    context.wrap_socket(sock, server_hostname=self.target.host) as tls:
                version = tls.version()
        except ssl.SSLCertVerificationError as exc:
            where = f"collector.ca_file ({ca})" if ca else "this system's CAs (no collector.ca_file)"
            self._fail("TLS", f"the collector's certificate is not trusted by {where}: {exc.verify_message}",
                       "set collector.ca_file to the CA that signed the collector's certificate "
                       "(ask the province for its CA file)" if not ca else
                       f"{ca} is not the CA that signed this collector's certificate: get the right CA "
                       "file from the province, or check collector.url's host name")
        except (OSError, ssl.SSLError) as exc:
            self._fail("TLS", f"TLS handshake failed: {exc}",
                       "check that collector.url points at the collector's HTTPS port")
        self.steps.append(Step("TLS", True, f"{version}, certificate verified"
                                            f"{' with ' + str(ca) if ca else ' by the system CAs'}"))
        return context

    def _read_token(self) -> str:
        token, problem = read_token(self.settings)
        if problem:
            self._fail("token", problem, f"put the token issued for this site in it (ask the province: "
                                         f"commune-collector token issue {self.cfg.site.id})")
        return token

    def _get(self, client: Any, path: str, step: str) -> Any:
        import httpx
        try:
            return client.get(self.target.base + path, headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as exc:
            self._fail(step, f"request to {path} failed: {type(exc).__name__}: {exc}",
                       f"check the collector's log; try: curl -v {self.target.base}/readyz")

    def whoami(self, client: Any) -> dict[str, Any]:
        self.token = self._read_token()
        site = self.cfg.site.id
        response = self._get(client, f"{WHOAMI_PATH}?site={site}", "token")
        if response.status_code == 401:
            self._fail("token", f"refused by the collector: {_problem(response)}",
                       f"the token is wrong, mistyped or revoked: get a new one for {site} "
                       f"(commune-collector token issue {site}) and write it to the token file")
        if response.status_code == 404:
            self._fail("token", f"the collector has no {WHOAMI_PATH} (an older collector)",
                       "upgrade the collector, or check that collector.url is the collector's base URL")
        if response.status_code != 200:
            self._fail("token", f"HTTP {response.status_code} from {WHOAMI_PATH}: {_problem(response)}",
                       "check the collector's log")
        me = response.json()
        if me["site"] != site:
            self.steps.append(Step("token", False, f"accepted, but it is the token of site {me['site']!r}, "
                                                   f"and this config is site {site!r}",
                                   f"use the token issued for {site}, or fix site.id if this office is "
                                   f"{me['site']}"))
            if me.get("asked_site_in_inventory") is False:
                self._fail("inventory", f"site {site} is not in the collector's inventory",
                           f"check site.id for a typo (the token is for {me['site']}: {me.get('name')}); "
                           f"if {site} is right, ask the province to add it (commune-collector sites import)")
            raise _Stop
        self.steps.append(Step("token", True, f"accepted for site {site}"))
        return me

    def inventory(self, me: dict[str, Any]) -> bool:
        site = self.cfg.site
        if not me["in_inventory"]:
            self.steps.append(Step("inventory", False, f"site {site.id} is not in the collector's inventory",
                                   f"ask the province to add {site.id} to the inventory "
                                   "(commune-collector sites import), or fix site.id"))
            return False
        where = f"{me['name']}, {me['province_name']}"
        if me["province"] != site.province:
            self.steps.append(Step("inventory", False, f"{where}: the inventory says province {me['province']}, "
                                                       f"this config says {site.province}",
                                   f"set site.province to {me['province']}, or ask the province to fix the "
                                   "inventory"))
            return True
        self.steps.append(Step("inventory", True, where))
        return True

    def clock_offset(self, client: Any) -> None:
        before = self.clock()
        response = self._get(client, WHOAMI_PATH, "clock")
        after = self.clock()
        if response.status_code != 200:
            self._fail("clock", f"HTTP {response.status_code} from {WHOAMI_PATH}", "run the check again")
        offset = response.json()["server_time"] - (before + after) / 2
        detail = f"{offset:+.1f} s (collector minus this machine, ±{(after - before) / 2:.1f} s)"
        if abs(offset) > CLOCK_WARN_S:
            self.steps.append(Step("clock", False, detail,
                                   "this machine's clock is off: turn on time sync (timedatectl set-ntp true) "
                                   "and check the time zone"))
        else:
            self.steps.append(Step("clock", True, detail))

    def report(self, client: Any) -> None:
        import httpx
        import msgspec

        from commune_common.wire import Ack, Report, encode_report

        report = Report(site=self.cfg.site.id, instance=self.instance, seq=0, sent_at=self.clock(),
                        agent_version=__version__, results=[])
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        try:
            response = client.post(self.target.base + REPORTS_PATH, headers=headers,
                                   content=gzip.compress(encode_report(report)))
        except httpx.HTTPError as exc:
            self._fail("report", f"POST {REPORTS_PATH} failed: {type(exc).__name__}: {exc}",
                       "check the collector's log and run the check again")
        if response.status_code != 200:
            self._fail("report", f"HTTP {response.status_code}: {_problem(response)}",
                       "check the collector's log (a 503 means its store is busy: run the check again)")
        try:
            ack = msgspec.json.decode(response.content, type=Ack)
        except msgspec.DecodeError:
            self._fail("report", "the answer is not the collector's acknowledgement (a proxy or captive portal?)",
                       "check that collector.url reaches the collector directly")
        last = (self._get(client, WHOAMI_PATH, "report").json() or {}).get("last_report") or {}
        if last.get("instance") != self.instance or last.get("seq") != ack.accepted:
            self._fail("report", "acknowledged, but the collector does not show it as the site's last report",
                       "run the check again; if it persists, report it to the province with the collector's log")
        self.steps.append(Step("report", True, f"acknowledged and visible as the site's last report "
                                               f"(instance {self.instance})"))


def _problem(response: Any) -> str:
    try:
        body = response.json()
        return str(body.get("detail") or body.get("title") or body)[:200]
    except ValueError:
        return response.text[:200].replace("\n", " ")


RESULT = {True: "ok", False: "FAIL", None: "-"}


def print_steps(steps: list[Step], out: IO[str]) -> None:
    """The table: one line per step, the next action on each failing one."""
    rows = [("STEP", "RESULT", "DETAIL", "NEXT ACTION")]
    rows += [(s.name, RESULT[s.ok], s.detail, s.action) for s in steps]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        out.write((line + "  " + row[3]).rstrip() + "\n")
    failed = [s for s in steps if s.ok is False]
    if failed:
        out.write(f"\nthe collector does NOT hear this site yet: fix '{failed[0].name}' first, then run "
                  "commune-agent check-collector again\n")
    else:
        out.write("\nthe collector hears this site: all checks passed\n")
