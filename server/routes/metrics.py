"""GET /metrics: Prometheus metrics (orch.observe.metrics), behind an API key unless the
operator opens it (`metrics_public`)."""

from __future__ import annotations

from litestar import Response, get

from orch.observe.metrics import CONTENT_TYPE, exposition
from orch.server.context import Ctx


@get("/metrics", include_in_schema=False)
async def metrics(ctx: Ctx) -> Response[bytes]:
    try:
        counts: dict[str, int] | None = await ctx.engine.store.run_counts()
    except Exception:  # noqa: BLE001 - the database is down: the other metrics still answer
        counts = None
    return Response(exposition(counts), media_type=CONTENT_TYPE)
