"""Typed dependencies the routes declare (``StoreDep``, ``StateDep``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from commune_collector.problems import Problem
from commune_collector.provinces import provinces
from commune_collector.runtime.state import CollectorState
from commune_collector.store.base import Store


# async on purpose: FastAPI runs a plain-def dependency in a worker thread, a hop per request
async def get_state(request: Request) -> CollectorState:
    return request.app.state.collector


async def get_store(request: Request) -> Store:
    return request.app.state.collector.store


StateDep = Annotated[CollectorState, Depends(get_state)]
StoreDep = Annotated[Store, Depends(get_store)]


def known_province(province: str | None) -> str | None:
    """The ``province`` filter as given; 422 naming the field when it is not one of the province slugs."""
    known = provinces()
    if province is not None and province not in known:
        raise Problem(422, "Invalid request", f"unknown province {province!r}",
                      errors=[("province", f"is not one of the {len(known)} province slugs")])
    return province
