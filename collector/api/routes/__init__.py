"""One module per resource; a new resource is one file and one line here."""

from __future__ import annotations

from fastapi import APIRouter

from commune_collector.api.routes import (
                            access,
                            agent_config,
                            enroll,
                            health,
                            history,
                            maintenance,
                            metrics,
                            provinces,
                            reports,
                            rollouts,
                            sites,
                            verdicts,
                            whoami,
)

ROUTERS: list[APIRouter] = [health.router, reports.router, sites.router, metrics.router,
                            verdicts.router, provinces.router, history.router,
                            access.router, whoami.router]
ROUTERS += [enroll.router, agent_config.router, rollouts.router]  # fleet management (collector.fleet)
ROUTERS += [maintenance.router]  # maintenance windows (collector.maintenance)
# schemas referenced by hand-written request bodies, merged into /openapi.json
COMPONENTS: dict[str, dict] = {**reports.SCHEMA_COMPONENTS}
