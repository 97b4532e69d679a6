"""NUT: ``dummy-ups`` driver + ``upsd`` on 127.0.0.1:<free TCP port>.

The agent talks the NUT network protocol to upsd; a dummy-ups driver behind
it lets tests script the UPS state.  What shapes this:

* call ``/lib/nut/upsd`` (``/sbin/upsd`` is a wrapper that exits when
  ``nut.conf`` says MODE=none);
* with ``-u root`` every config file must be mode 600;
* ``NUT_CONFPATH``/``NUT_STATEPATH`` point both daemons at the temp dir.

Changing state live (see :meth:`NutPeer.set_var`): variables the driver
already has are changed with ``upsrw`` through upsd (instant, and the same
SET path a real client uses); a variable the driver does not know yet is
added by rewriting ``dummy.dev``, which the driver re-reads within its
``pollinterval`` (1 s here).  Either way the call then polls ``upsc`` until
it shows the new value, so callers never race the change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._base import (
    Peer,
    PeerError,
    free_tcp_port,
    peer_fixture,
    random_secret,
    require_binary,
    run_tool,
    wait_until,
    write_private,
)

NUT_LIBEXEC = "/lib/nut"

DEFAULT_VARS: dict[str, str] = {
    "ups.status": "OL",
    "ups.load": "23",
    "battery.charge": "100",
    "battery.runtime": "3600",
    "input.voltage": "230.0",
    "output.voltage": "230.0",
    "ups.mfr": "Dummy Manufacturer",
    "ups.model": "Dummy UPS",
}


class NutPeer(Peer):
    """A NUT server with one dummy UPS; attributes host, port, ups_name, target.

    ``admin_user``/``admin_password`` may SET variables (upsd.users ``actions
    = SET``, ``instcmds = ALL``).  ``reset()`` restores the initial variables,
    which a session-scoped fixture's users should call after mutating it.
    """

    name = "nut"

    def __init__(
        self,
        *,
        ups_name: str = "dummy",
        variables: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self.ups_name = ups_name
        self.admin_user = "admin"
        self.admin_password = random_secret("nut-")
        self.initial_vars: dict[str, str] = dict(DEFAULT_VARS if variables is None else variables)
        self._vars: dict[str, str] = dict(self.initial_vars)
        self.conf_dir = self.dir / "etc"
        self.state_dir = self.dir / "state"
        self._dev_mtime = 0

    @property
    def target(self) -> str:
        """``UPS@HOST:PORT`` as upsc/upsmon and the agent config spell it."""
        return f"{self.ups_name}@{self.host}:{self.port}"

    @property
    def variables(self) -> dict[str, str]:
        """The harness's model of the current variables (what upsc should show)."""
        return dict(self._vars)

    def _env(self) -> dict[str, str]:
        return {"NUT_CONFPATH": str(self.conf_dir), "NUT_STATEPATH": str(self.state_dir)}

    def _check_requirements(self) -> None:
        for tool in (f"{NUT_LIBEXEC}/dummy-ups", f"{NUT_LIBEXEC}/upsd", "upsc", "upsrw"):
            require_binary(tool)

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        write_private(self.conf_dir / "nut.conf", "MODE=standalone\n")
        write_private(
            self.conf_dir / "ups.conf",
            f"[{self.ups_name}]\n"
            "  driver = dummy-ups\n"
            "  port = dummy.dev\n"
            "  mode = dummy-once\n"
            "  pollinterval = 1\n"
            '  desc = "commune-monitor test UPS"\n',
        )
        write_private(self.conf_dir / "upsd.conf", f"LISTEN {self.host} {self.port}\n")
        write_private(
            self.conf_dir / "upsd.users",
            f"[{self.admin_user}]\n"
            f"  password = {self.admin_password}\n"
            "  actions = SET\n"
            "  instcmds = ALL\n",
        )
        self._write_dev_file()

    def _write_dev_file(self) -> None:
        """Write the driver's data file from the model (atomically).

        The driver notices a change by the file's mtime in whole seconds, so
        two writes within one second could go unseen: each write gets an
        mtime at least one second after the previous one.
        """
        text = "".join(f"{name}: {value}\n" for name, value in self._vars.items())
        tmp = self.conf_dir / "dummy.dev.tmp"
        write_private(tmp, text)
        mtime = max(int(time.time()), self._dev_mtime + 1)
        os.utime(tmp, (mtime, mtime))
        self._dev_mtime = mtime
        tmp.replace(self.conf_dir / "dummy.dev")

    def _launch(self) -> None:
        self._spawn(
            [f"{NUT_LIBEXEC}/dummy-ups", "-a", self.ups_name, "-F", "-u", "root"],
            log_name="dummy-ups.log",
            env=self._env(),
        )
        socket_path = self.state_dir / f"dummy-ups-{self.ups_name}"
        # upsd copes with a missing driver but then retries only slowly.
        self.wait_ready(socket_path.exists, what=f"driver socket {socket_path}")
        self._spawn(
            [f"{NUT_LIBEXEC}/upsd", "-F", "-u", "root"],
            log_name="upsd.log",
            env=self._env(),
        )

    @property
    def log_path(self) -> Path:
        """upsd's log (the driver logs to dummy-ups.log beside it)."""
        return self.dir / "upsd.log"

    def _is_ready(self) -> bool:
        """upsc answers *and* the driver has marked every variable writable.

        dummy-ups publishes values a couple of seconds before it flags them
        read-write; until then ``upsrw -s`` fails with ERR READONLY.
        """
        return bool(self.get("ups.status")) and set(self._vars) <= self.writable_vars()

    def writable_vars(self) -> set[str]:
        """Variables upsd lists as settable (``upsrw UPS@HOST:PORT``)."""
        out = run_tool([require_binary("upsrw"), self.target], env=self._env(), check=False).stdout
        return {
            line[1:-1] for line in out.splitlines() if line.startswith("[") and line.endswith("]")
        }

    # -- queries and state changes ------------------------------------------

    def get(self, name: str) -> str:
        """``upsc UPS@HOST:PORT name`` (PeerError if upsd/driver does not know it)."""
        result = run_tool([require_binary("upsc"), self.target, name], env=self._env(), check=False)
        if result.returncode != 0:
            raise PeerError(f"upsc {self.target} {name}: {result.stderr.strip()}")
        return result.stdout.strip()

    def get_all(self) -> dict[str, str]:
        """Every variable upsd reports for the UPS."""
        out = run_tool([require_binary("upsc"), self.target], env=self._env()).stdout
        pairs = (line.split(": ", 1) for line in out.splitlines() if ": " in line)
        return {key: value for key, value in pairs}

    def wait_for(self, name: str, value: str, timeout: float = 10.0) -> None:
        """Poll upsc until ``name`` reads ``value`` (the change is visible)."""

        def shows_value() -> bool:
            try:
                return self.get(name) == value
            except PeerError:
                return False

        wait_until(shows_value, timeout=timeout, interval=0.1, what=f"upsc {name}={value!r}")

    def set_var(self, name: str, value: str | int | float, *, wait: bool = True) -> None:
        """Change one variable live; see the module docstring for how."""
        text = str(value)
        known = name in self._vars
        self._vars[name] = text
        if known:
            self._upsrw(name, text)
        else:
            self._write_dev_file()
        if wait:
            self.wait_for(name, text)

    def set_vars(self, values: Mapping[str, str | int | float]) -> None:
        """Change several variables, then wait until upsc shows all of them."""
        for name, value in values.items():
            self.set_var(name, value, wait=False)
        for name, value in values.items():
            self.wait_for(name, str(value))

    def set_status(self, status: str) -> None:
        """Shortcut for ``ups.status`` (e.g. ``"OB DISCHRG"``, ``"OL CHRG"``, ``"OB LB"``)."""
        self.set_var("ups.status", status)

    def reset(self) -> None:
        """Restore the initial variables (rewrites dummy.dev) and wait for them."""
        self._vars = dict(self.initial_vars)
        self._write_dev_file()
        for name, value in self._vars.items():
            self.wait_for(name, value)

    def _upsrw(self, name: str, value: str) -> None:
        run_tool(
            [
                require_binary("upsrw"),
                "-s",
                f"{name}={value}",
                "-u",
                self.admin_user,
                "-p",
                self.admin_password,
                "-w",
                self.target,
            ],
            env=self._env(),
        )


def nut_fixture(
    *, scope: str = "session", name: str | None = None, **kwargs: Any
) -> Callable[..., Iterator[NutPeer]]:
    """A pytest fixture yielding a started :class:`NutPeer` (kwargs go to it)."""
    return peer_fixture(lambda: NutPeer(**kwargs), scope=scope, name=name)
