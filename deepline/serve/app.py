"""The FastAPI application: every protocol from one process, with its middleware and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from deepline import __version__
from deepline.registry import PROTOCOLS
from deepline.serve.batching import Arrivals
from deepline.serve.dataplane import DataPlane
from deepline.serve.errors import HANDLERS
from deepline.serve.fast_lane import FastLane
from deepline.serve.metrics import ServerMetrics
from deepline.serve.middleware import BearerToken, BodyLimit, RequestMetrics
from deepline.serve.openapi import install as install_openapi
from deepline.serve.repository import Entry, scan
from deepline.serve.served import ModelSet
from deepline.serve.settings import ServeSettings


def create_app(
    source: str | Path | Sequence[Entry], settings: ServeSettings | None = None
) -> FastAPI:
    """An app serving a bundle, a repository folder (``NAME/VERSION/``) or chosen entries."""
    settings = settings or ServeSettings()
    entries = scan(source) if isinstance(source, (str, Path)) else list(source)
    metrics = ServerMetrics()
    arrivals = Arrivals()
    models = ModelSet(entries, settings, metrics, arrivals)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        grpc_server = None
        if settings.grpc_port is not None:  # KServe V2 over gRPC, on the same data plane
            from deepline.serve.grpc_v2 import start_grpc

            grpc_server, app.state.grpc_port = await start_grpc(app.state.plane, settings)
        yield
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        await models.close()

    app = FastAPI(
        title="deepline model server",
        version=__version__,
        description="deepline's own API, TensorFlow Serving REST and KServe V2 inference.",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: no CDN, works offline
        redoc_url=None,
    )
    app.state.plane = DataPlane(models)
    app.state.settings = settings
    app.state.metrics = metrics
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)
    for name in sorted(PROTOCOLS.names(), key=lambda n: PROTOCOLS.meta(n).get("order", 50)):
        app.include_router(PROTOCOLS.get(name))

    install_openapi(app, settings)
    _add_api_docs(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # added innermost first: metrics see every answer, including 401 and 413
    lane = [route for n in PROTOCOLS.names() for route in PROTOCOLS.meta(n).get("lane", ())]
    app.add_middleware(FastLane, routes=lane, owner=app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.token:
        app.add_middleware(BearerToken, token=settings.token)
    app.add_middleware(RequestMetrics, metrics=metrics, arrivals=arrivals)
    return app


def _add_api_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the files of the ``swagger-ui-bundle`` package."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
