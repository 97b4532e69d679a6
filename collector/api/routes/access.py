"""GET /api/v1/access/me: who the collector thinks you are (role, scope, how you signed in)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep

router = APIRouter(prefix="/api/v1", tags=["access"], responses=ACCESS_RESPONSES)


class Me(BaseModel):
    name: str
    role: str
    province: str | None
    via: str


@router.get("/access/me", response_model=Me)
async def me(viewer: ViewerDep) -> Me:
    """The principal of this request: check a token or the single-sign-on set-up."""
    return Me(name=viewer.name, role=viewer.role.value, province=viewer.province, via=viewer.via)
