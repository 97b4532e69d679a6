"""nginx (Debian's) on 127.0.0.1:<free port> with a site config given as text.

The peer writes a minimal main config (no daemon, logs and temp files in its
own dir, workers as root so they can write there) that includes the site
config; tests pass the shipped ``deploy/nginx`` config with its addresses
replaced by loopback ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import Peer, free_tcp_port, require_binary, run_tool, tcp_port_listening

MAIN = """\
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include {dir}/site.conf;
}}
"""


class NginxPeer(Peer):
    """A throwaway nginx; ``site`` is the server config, or a callable that gets the chosen port."""

    name = "nginx"

    def __init__(self, site: str | Callable[[int], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._site = site
        self.port = 0
        self.config_path = self.dir / "nginx.conf"

    def _check_requirements(self) -> None:
        require_binary("nginx")

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        (self.dir / "tmp").mkdir(exist_ok=True)
        site = self._site(self.port) if callable(self._site) else self._site
        (self.dir / "site.conf").write_text(site)
        self.config_path.write_text(MAIN.format(dir=self.dir))
        run_tool([require_binary("nginx"), "-t", "-q", "-c", str(self.config_path), "-e", str(self.dir / "error.log")])

    def _launch(self) -> None:
        self._spawn([require_binary("nginx"), "-c", str(self.config_path), "-e", str(self.dir / "error.log")])

    def _is_ready(self) -> bool:
        return tcp_port_listening(self.port)

    def _extra_logs(self) -> list:
        return [self.dir / "error.log"]
