"""The fleet's tables on both databases (SQLite and a real PostgreSQL): enrollment is all or nothing, the
last use of a token goes to exactly one of the boxes racing for it, tokens are stored hashed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from commune_collector.auth import new_token
from commune_collector.fleet.db import AgentState, FleetDb, UseRefused
from commune_collector.fleet.enroll import EnrollRefused, enroll
from commune_collector.fleet.tokens import new_enroll_token
from commune_collector.store.base import Store
from tests.test_store import SITES, postgres, store, store_factory  # noqa: F401 - shared fixtures (both backends)

SITE = SITES[0].id


def _token(db: FleetDb, max_uses: int, **kwargs: object) -> str:
    now = time.time()
    text, record = new_enroll_token("ha-noi", (), now, now + 3600, max_uses, **kwargs)  # type: ignore[arg-type]
    db.add_enroll_token(record)
    return text


def test_the_last_use_goes_to_exactly_one_of_the_racing_boxes(store: Store) -> None:  # noqa: F811
    db = FleetDb(store)
    try:
        text = _token(db, max_uses=3, allow_reenroll=True)
        token = db.get_enroll_token(text.split("_")[1])
        assert token is not None and text.split("_", 2)[2] not in repr(token)  # only the hash is kept

        def attempt(i: int) -> bool:
            try:
                db.enroll(token, new_token(SITE)[1], f"box-{i}", time.time(), False)  # type: ignore[arg-type]
                return True
            except UseRefused:
                return False
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(attempt, range(8)))
        assert sum(won) == 3
        assert db.get_enroll_token(token.id).uses == 3  # type: ignore[union-attr]
        assert len(db.enrollments(SITE)) == 3
        live = [t for t in store.list_tokens(SITE) if t.revoked_at is None]
        assert len(live) == 1  # each enrollment revoked the site's earlier tokens
    finally:
        db.close()


def test_enrollment_rules_and_the_agents_state_on_both_databases(store: Store, tmp_path: Path) -> None:  # noqa: F811
    db = FleetDb(store)
    try:
        text = _token(db, max_uses=5)
        first = enroll(store, db, text, SITE, "box-a", live_within=600)
        assert store.list_tokens(SITE)[0].hash != first.token  # stored hashed
        from tests.test_store import item_of
        from testsupport.collector import make_report
        store.ingest(item_of(make_report(SITE, 1, instance="box-a")))
        with pytest.raises(EnrollRefused) as refused:
            enroll(store, db, text, SITE, "box-b", live_within=600)
        assert refused.value.status == 409
        db.allow_reenroll(SITE, time.time())
        assert enroll(store, db, text, SITE, "box-b", live_within=600).reenrolled
        assert not db.reenroll_allowed(SITE)
        assert db.revoke_enroll_token(text.split("_")[1], time.time()) == 1
        assert db.list_enroll_tokens()[0].state(time.time()) == "revoked"
        db.save_agent_state(AgentState(SITE, "box-b", "v1", "", 1.0))
        db.save_agent_state(AgentState(SITE, "box-b", "v2", "config v3: refused", 2.0, "box-a", 1.5))
        assert db.agent_states()[SITE] == AgentState(SITE, "box-b", "v2", "config v3: refused", 2.0, "box-a", 1.5)
    finally:
        db.close()
