"""A clockchain for the tests (flash-contract §9): the figure routes Flash calls, today's and
listed moments, and `POST /ingest/tdf` validating records the way the clockchain does (its
TDFRecord model, the TDF library's hash). Run in a thread by the `clockchain_peer` fixture;
everything it was sent is in `received`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from support import in_thread

KEY = "clockchain-peer-key-0123456789abcdefghij"
FIGURES = {
    "fig_armstrong": {
        "id": "fig_armstrong",
        "display_name": "Neil Armstrong",
        "entity_type": "person",
        "score": 1.0,
    },
    "fig_aldrin": {
        "id": "fig_aldrin",
        "display_name": "Buzz Aldrin",
        "entity_type": "person",
        "score": 0.7,
    },
}
TODAY = [
    {
        "path": "/1969/july/20/2017/us/texas/houston/apollo-11-landing",
        "name": "Apollo 11 lands on the Moon",
        "one_liner": "Eagle touches down in the Sea of Tranquility.",
        "year": 1969,
        "month": 7,
        "day": 20,
        "image_url": None,
    }
]
MOMENTS = [
    {
        "path": "/-44/march/15/1200/italy/lazio/rome/caesar",
        "name": "Death of Caesar",
        "year": -44,
        "month": "march",
        "day": 15,
        "city": "rome",
        "country": "italy",
    }
]


class TDFProvenance(BaseModel):
    generator: str
    run_id: str | None = None
    confidence: float | None = None
    flash_id: str | None = None


class TDFRecord(BaseModel):
    """The TDF library's record, as the clockchain's ingest validates it."""

    id: str
    version: str = "1.0.0"
    source: Literal["clockchain", "flash", "pro", "proteus", "snag-bench"]
    timestamp: datetime
    provenance: TDFProvenance
    payload: dict[str, Any]
    tdf_hash: str = ""

    def compute_hash(self) -> str:
        canonical = json.dumps(self.payload, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ClockchainPeer:
    url: str = ""
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    ingested: list[TDFRecord] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/api/v1/figures/search", self._search),
                Route("/api/v1/figures/{id}", self._figure),
                Route("/api/v1/figures/{id}/ground", self._ground, methods=["PATCH"]),
                Route("/api/v1/today", self._today),
                Route("/api/v1/moments", self._moments),
                Route("/api/v1/ingest/tdf", self._ingest, methods=["POST"]),
            ]
        )

    async def _keyed(self, request: Request) -> Response | None:
        body = await request.body()
        self.received.append(
            (
                request.method,
                request.url.path,
                json.loads(body) if body else dict(request.query_params),
            )
        )
        if request.headers.get("x-service-key") != KEY:
            return JSONResponse({"detail": "Invalid service key"}, status_code=403)
        return None

    async def _health(self, _request: Request) -> Response:
        return JSONResponse({"status": "healthy", "service": "timepoint-clockchain"})

    async def _search(self, request: Request) -> Response:
        refused = await self._keyed(request)
        if refused:
            return refused
        query = request.query_params.get("q", "").lower()
        found = [f for f in FIGURES.values() if query in f["display_name"].lower()]
        return JSONResponse({"results": found, "query": query, "total": len(found)})

    async def _figure(self, request: Request) -> Response:
        refused = await self._keyed(request)
        figure = FIGURES.get(request.path_params["id"])
        if refused or figure is None:
            return refused or JSONResponse({"detail": "Figure not found"}, status_code=404)
        return JSONResponse(figure)

    async def _ground(self, request: Request) -> Response:
        refused = await self._keyed(request)
        return refused or JSONResponse({"id": request.path_params["id"], "grounded": True})

    async def _today(self, request: Request) -> Response:
        refused = await self._keyed(request)
        return refused or JSONResponse({"month": 7, "day": 20, "events": TODAY})

    async def _moments(self, request: Request) -> Response:
        refused = await self._keyed(request)
        return refused or JSONResponse(
            {"items": MOMENTS, "total": len(MOMENTS), "limit": 100, "offset": 0}
        )

    async def _ingest(self, request: Request) -> Response:
        refused = await self._keyed(request)
        if refused:
            return refused
        try:
            records = [TDFRecord(**raw) for raw in await request.json()]
        except (ValidationError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        for record in records:
            if record.tdf_hash != record.compute_hash():
                return JSONResponse({"detail": "tdf_hash mismatch"}, status_code=422)
        self.ingested.extend(records)
        return JSONResponse({"ingested_nodes": len(records)})


@pytest.fixture(scope="session")
def clockchain_peer_server() -> Iterator[ClockchainPeer]:
    peer = ClockchainPeer()
    with in_thread(peer.app(), "the clockchain peer") as url:
        peer.url = url
        yield peer


@pytest.fixture
def clockchain_peer(clockchain_peer_server: ClockchainPeer) -> ClockchainPeer:
    clockchain_peer_server.received.clear()
    clockchain_peer_server.ingested.clear()
    return clockchain_peer_server
