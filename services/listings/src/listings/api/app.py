"""The application factory used by gunicorn (`listings.api.app:create_app()`) and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from listings import migrate, redis_client
from listings.api import routes_ingest, routes_listings, routes_ops
from listings.api.errors import install_error_handlers
from listings.api.middleware import RequestContextMiddleware
from listings.api.state import AppState
from listings.db import create_engine
from listings.ingest.queue import StreamNames
from listings.logs import configure_logging
from listings.metrics import BUILD_INFO
from listings.sentry import init_sentry
from listings.settings import Settings, load_settings
from listings.web import views


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging("api", settings.log_level)
    # Before the app exists: the Starlette integration patches the classes it is built from.
    init_sentry(settings, "api")
    # Clients connect lazily, so the app can start (and answer /health) while PG or Redis are down.
    engine = create_engine(settings)
    redis = redis_client.connect(settings.redis_url.get_secret_value())
    state = AppState(
        settings=settings,
        engine=engine,
        redis=redis,
        names=StreamNames.from_settings(settings),
        head_revision=migrate.head_revision(),
        known_revisions=migrate.known_revisions(),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await redis.aclose()
        await engine.dispose()

    docs = settings.docs_on
    app = FastAPI(
        title="Slipway listings",
        version=settings.version,
        debug=settings.debug,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.listings = state
    install_error_handlers(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_listings.router)
    app.include_router(routes_ingest.router)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=str(files("listings") / "web" / "static")), "static")

    def pool_stats() -> tuple[int, int]:
        pool = engine.pool
        return pool.checkedin() + pool.checkedout(), pool.checkedout()  # type: ignore[attr-defined]

    mounts = [route.path for route in app.routes if isinstance(route, Mount)]
    app.add_middleware(RequestContextMiddleware, pool_stats=pool_stats, mounts=mounts)
    BUILD_INFO.labels(settings.version, settings.git_sha, settings.release).set(1)
    return app
