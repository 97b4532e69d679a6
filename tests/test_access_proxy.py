"""Single sign-on through a real nginx (Debian's) in front of a real collector, with the shipped config.

``deploy/nginx/commune-monitor.conf`` runs as shipped, only its addresses,
port and certificate replaced by loopback ones. oauth2-proxy is neither in
Debian nor on PyPI, so a small stand-in answers its one endpoint nginx asks
(``/oauth2/auth``: 202 with ``X-Auth-Request-User`` and
``X-Auth-Request-Groups`` for a known session cookie, 401 otherwise); nginx
and the collector are the real ones.

Shown: the user and groups nginx passes are honoured and mapped to a role and
province; a client's own identity headers are replaced by nginx, and ignored
by the collector when sent to it directly from an address that is not a
trusted proxy; operator tokens skip the sign-on; a user in no group is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from commune_collector.sites import Site
from testsupport.collector import CollectorPeer, self_signed_cert
from testsupport.peers._base import free_tcp_port, wait_until
from testsupport.peers.nginx import NginxPeer

SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "commune-monitor.conf"
SITES = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
# session cookie -> (user, groups) as the identity provider would say
SESSIONS = {"s-province": ("lan.nguyen@ha-noi", "staff,commune-monitor:province:ha-noi"),
            "s-national": ("minh.tran@mic", "/mic/noc"),
            "s-nobody": ("khach@example", "staff")}
FORGED = {"X-Forwarded-User": "attacker", "X-Forwarded-Groups": "commune-monitor:national"}


class StandInOAuth2Proxy:
    """oauth2-proxy's contract with nginx's auth_request, for sessions known in advance; counts its checks."""

    def __init__(self) -> None:
        self.checks = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.startswith("/oauth2/auth"):
                    outer.checks += 1
                    cookie = self.headers.get("Cookie", "")
                    session = cookie.removeprefix("_oauth2_proxy=") if cookie.startswith("_oauth2_proxy=") else ""
                    if session in SESSIONS:
                        user, groups = SESSIONS[session]
                        self.send_response(202)
                        self.send_header("X-Auth-Request-User", user)
                        self.send_header("X-Auth-Request-Groups", groups)
                    else:
                        self.send_response(401)
                else:
                    self.send_response(200)  # /oauth2/sign_in: the identity provider's page
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_tcp_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInOAuth2Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def site_config(shipped: str, port: int, collector_port: int, oauth_port: int, cert: Path, key: Path) -> str:
    """The shipped config with loopback addresses; each replaced line must be there (the test follows the file)."""
    swaps = {"server 127.0.0.1:8470;": f"server 127.0.0.1:{collector_port};",
             "server 127.0.0.1:4180;": f"server 127.0.0.1:{oauth_port};",
             "listen 443 ssl http2;": f"listen 127.0.0.1:{port} ssl http2;",
             "/etc/ssl/commune-monitor/fullchain.pem": str(cert),
             "/etc/ssl/commune-monitor/privkey.pem": str(key)}
    for old, new in swaps.items():
        assert shipped.count(old) == 1, f"{SHIPPED.name} no longer has {old!r}"
        shipped = shipped.replace(old, new)
    return shipped


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("sso")
    cert, key = self_signed_cert(work)
    settings = {"judge": {"interval": "1s", "process": False},
                "access": {"proxy": {"trusted": ["127.0.0.1/32"], "groups": {"/mic/noc": "national"}}}}
    with StandInOAuth2Proxy() as oauth, CollectorPeer(sites=SITES, settings=settings) as collector:
        wait_until(lambda: httpx.get(f"{collector.url}/api/v1/provinces", headers=collector.headers,
                                     timeout=5).status_code == 200, timeout=60, what="the judge's first pass")
        shipped = SHIPPED.read_text()
        with NginxPeer(lambda port: site_config(shipped, port, collector.port, oauth.port, cert, key)) as nginx:
            yield {"nginx": f"https://127.0.0.1:{nginx.port}", "collector": collector, "oauth": oauth}


def via_nginx(stack: dict[str, Any], path: str, session: str | None = None, **headers: str) -> httpx.Response:
    cookies = {"_oauth2_proxy": session} if session else None
    with httpx.Client(base_url=stack["nginx"], verify=False, cookies=cookies, timeout=30) as client:
        return client.get(path, headers=headers)


def test_the_user_and_groups_from_nginx_are_honoured(stack: dict[str, Any]) -> None:
    me = via_nginx(stack, "/api/v1/access/me", "s-province")
    assert me.status_code == 200, me.text
    assert me.json() == {"name": "lan.nguyen@ha-noi", "role": "province", "province": "ha-noi", "via": "proxy"}
    assert via_nginx(stack, "/p/ha-noi", "s-province").status_code == 200
    assert via_nginx(stack, "/p/hue", "s-province").status_code == 404
    assert via_nginx(stack, f"/api/v1/sites/{SITES[1].id}", "s-province").status_code == 404
    sites = via_nginx(stack, "/api/v1/sites", "s-province").json()
    assert [s["id"] for s in sites["items"]] == [SITES[0].id]
    national = via_nginx(stack, "/api/v1/access/me", "s-national").json()  # an IdP group mapped in settings
    assert national["role"] == "national" and national["name"] == "minh.tran@mic"
    assert via_nginx(stack, "/metrics", "s-national").status_code == 200


def test_a_clients_own_identity_headers_never_reach_the_collector(stack: dict[str, Any]) -> None:
    me = via_nginx(stack, "/api/v1/access/me", "s-province", **FORGED)
    assert me.json()["name"] == "lan.nguyen@ha-noi" and me.json()["role"] == "province"
    anonymous = via_nginx(stack, "/api/v1/sites", None, **FORGED)
    assert anonymous.status_code == 302 and "/oauth2/sign_in" in anonymous.headers["location"]


def test_the_same_headers_sent_around_nginx_are_ignored(stack: dict[str, Any]) -> None:
    collector: CollectorPeer = stack["collector"]
    # 127.0.0.2 is this machine too, but not in access.proxy.trusted (127.0.0.1/32, nginx's address)
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=collector.url, transport=transport, timeout=30) as direct:
        for path in ("/api/v1/access/me", "/api/v1/sites", "/", "/metrics"):
            response = direct.get(path, headers=FORGED)
            assert response.status_code == 401, f"{path} around nginx: {response.status_code}"


def test_operator_tokens_skip_the_sign_on_and_a_user_in_no_group_is_refused(stack: dict[str, Any]) -> None:
    collector: CollectorPeer = stack["collector"]
    before = stack["oauth"].checks
    me = via_nginx(stack, "/api/v1/access/me", None, Authorization=f"Bearer {collector.operator_token}", **FORGED)
    assert me.status_code == 200 and me.json()["via"] == "token" and me.json()["name"] == "tests"
    assert stack["oauth"].checks == before  # nginx did not ask the sign-on for a token holder
    nobody = via_nginx(stack, "/api/v1/access/me", "s-nobody")
    assert nobody.status_code == 403 and "no commune-monitor group" in nobody.json()["detail"]
    assert via_nginx(stack, "/healthz").status_code == 200  # open paths need no sign-on
    assert via_nginx(stack, "/static/style.css").status_code == 200
