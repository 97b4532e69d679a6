"""Operators for tests: a credential in a store, or a principal granted to a bare app.

Every read route is behind the gate (collector.access), so a test that reads
presents an operator: ``operator_headers(store)`` creates one in the store the
app uses; ``CollectorPeer.headers`` does it for a collector process (CLI);
``grant(app)`` gives a bare FastAPI app (pages without a collector) a principal.
"""

from __future__ import annotations

from typing import Any

from commune_collector.access.roles import Principal, Role
from commune_collector.access.tokens import new_operator_token
from commune_collector.store.base import Store


def operator_token(store: Store, role: Role | str = Role.NATIONAL, province: str | None = None,
                   name: str = "tests", expires_at: float | None = None) -> str:
    """A new operator token stored in ``store`` (its text)."""
    text, record = new_operator_token(name, Role(role), province, expires_at)
    store.add_operator(record)
    return text


def operator_headers(store: Store, role: Role | str = Role.NATIONAL, province: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {operator_token(store, role, province)}"}


class _Grant:
    def __init__(self, app: Any, principal: Principal):
        self.app, self.principal = app, principal

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


def grant(app: Any, principal: Principal | None = None) -> None:
    """Every request to ``app`` acts as ``principal`` (a national operator by default); for apps without the gate."""
    app.add_middleware(_Grant, principal=principal or Principal("tests", Role.NATIONAL, via="test"))
