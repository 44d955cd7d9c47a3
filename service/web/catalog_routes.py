"""HTTP routes for the loaded playbooks: list them with their versions, reload them from disk."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.playbooks.catalog import Catalog
from service.web.guards import Endpoint


def listing(catalog: Catalog) -> dict[str, object]:
    return {
        "loaded_at": catalog.loaded_at.isoformat(),
        "playbooks": [catalog.versions[p.name].model_dump() for p in catalog.playbooks if p.name in catalog.versions],
    }


def catalog_routes(
    catalog: Catalog, operator: Callable[[str | None], bool], webhook: Callable[[str | None], bool]
) -> list[Route]:
    """GET /api/v1/playbooks and POST /api/v1/playbooks/reload (lint first; a refused set changes nothing), for an
    operator (an approver's token, or anyone where the service runs open); the webhook's credential only delivers
    alerts: it may neither see where playbooks live nor change which ones run."""

    def operators_only(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            header = request.headers.get("authorization")
            if operator(header):
                return await endpoint(request)
            if header and webhook(header):
                return JSONResponse(
                    {"error": "the webhook's credential only delivers alerts; use an approver token for playbooks"},
                    403,
                )
            return JSONResponse({"error": "unauthorized"}, 401)

        return checked

    async def show(request: Request) -> Response:
        return JSONResponse(listing(catalog))

    async def reload(request: Request) -> Response:
        problems = catalog.reload()
        if problems:
            kept = len(catalog.playbooks)
            return JSONResponse(
                {"error": f"the new playbooks have problems; the {kept} loaded ones stay", "problems": problems}, 422
            )
        return JSONResponse({"reloaded": True, **listing(catalog)})

    return [
        Route("/api/v1/playbooks", operators_only(show), methods=["GET"]),
        Route("/api/v1/playbooks/reload", operators_only(reload), methods=["POST"]),
    ]
