"""``GET /metrics``: the hub's figures in Prometheus's text format (:mod:`labhub.metrics`),
protected like the rest of the API: ``metrics.read`` (an admin, or a token made with only
that permission for the Prometheus server: docs/operations.md shows the scrape config).

It lives at ``/metrics``, the path Prometheus scrapes by default, not under ``/api/v1``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from labhub import metrics
from labhub.access.gate import On, needs
from labhub.access.permissions import P
from labhub.api.deps import HubDep
from labhub.api.document import file_response

router = APIRouter(tags=["hub"])


@router.get("/metrics", summary="The hub's metrics for Prometheus",
            response_class=Response,
            responses=file_response(metrics.CONTENT_TYPE,
                                    "Every metric in Prometheus's text format"),
            dependencies=[needs(P.METRICS_READ, On.HUB)])
def get_metrics(hub: HubDep) -> Response:
    """Readings accepted, duplicate, rejected and failed by source; the ingest queue and
    the commit durations; MQTT messages, acknowledgements and the outbox backlog; devices
    online; scheduled jobs' runs and failures; the sync backlog; free disk. Read when
    asked, from what the hub counts already (docs/operations.md lists each metric)."""
    return Response(metrics.for_hub(hub).render(), media_type=metrics.CONTENT_TYPE)
