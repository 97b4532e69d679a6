"""What routes declare: the principal the gate authenticated, and its scope applied.

``ViewerDep`` also puts the bearer scheme in /openapi.json. A route without
it is still closed by the gate, but cannot cut its answer to a province:
every read route takes it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from commune_collector.access.roles import Principal
from commune_collector.problems import Problem, documented

operator_bearer = HTTPBearer(auto_error=False, scheme_name="operatorToken",
                             description="an operator token: commune-collector operator create NAME --role ROLE; "
                                         "or the single-sign-on proxy's headers")


async def viewer(request: Request,
                 _: Annotated[HTTPAuthorizationCredentials | None, Security(operator_bearer)]) -> Principal:
    """The principal of this request (the gate set it); 401 if none, e.g. an app built without the gate."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Problem(401, "Unauthorized", "an operator credential is required",
                      headers={"WWW-Authenticate": "Bearer"})
    return principal


ViewerDep = Annotated[Principal, Depends(viewer)]


def list_scope(principal: Principal, province: str | None) -> str | None:
    """The province a list is cut to: the asked one if visible (404 otherwise), else the principal's own."""
    if province is not None:
        if not principal.may_read_province(province):
            raise Problem(404, "Not Found", f"no province {province!r}")
        return province
    return principal.province_scope


def require_province(principal: Principal, province: str | None, not_found: str) -> None:
    """404 with the same words as a missing resource when ``province`` is outside the principal's scope."""
    if not principal.may_read_province(province):
        raise Problem(404, "Not Found", not_found)




# documented on every router behind the gate
ACCESS_RESPONSES: dict[int | str, dict] = {
    401: documented("no operator credential, or an unknown, revoked or expired one (site tokens never read)"),
    403: documented("the credential's role may not read this (e.g. /metrics for a province operator)"),
}
