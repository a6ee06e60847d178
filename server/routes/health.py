"""Liveness and readiness, open to everyone (no API key)."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from orch.server.context import Ctx
from orch.server.schemas import Health


@get("/health", summary="Server status, graphs loaded and database reachability", tags=["health"],
     responses={503: ResponseSpec(Health, description="The database cannot be reached", generate_examples=False)})
async def health(ctx: Ctx) -> Response[Health]:
    try:
        await ctx.engine.store.ping()
        db = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health check
        db = f"error: {type(exc).__name__}"
    body = Health(status="ok" if db == "ok" else "unavailable", graphs=len(ctx.engine.graphs),
                  rejected=len(ctx.report.rejected), db=db, transforms=ctx.engine.services.transforms.mode)
    return Response(body, status_code=200 if db == "ok" else 503)
