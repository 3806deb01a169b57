"""Optional error reporting to Sentry, on only when LISTINGS_SENTRY_DSN is set.

Without a DSN sentry-sdk is never imported, so nothing is sent and nothing can fail. With one,
events carry the environment (LISTINGS_ENV), the release (the version), the service (api or
worker) and the request id, but no personal data: no request bodies (feeds and listings carry
the agents' contact details), no query strings (free-text search), no local variables, no
client IP or auth headers, and any field named like a contact column is scrubbed wherever it
appears.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from listings.logs import request_id_var
from listings.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk.integrations import Integration

Service = Literal["api", "worker"]
CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone")


def init_sentry(settings: Settings, service: Service) -> bool:
    """Start sentry-sdk when a DSN is configured; True when it was started.

    The worker calls this inside its event loop, so the asyncio integration can patch it.
    """
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    def before_send(event: Any, _hint: Any) -> Any:
        request = event.get("request")
        if isinstance(request, dict):
            # Search terms are free text that anyone may fill with a name or an address.
            request.pop("query_string", None)
        tags = event.setdefault("tags", {})
        tags["service"] = service
        request_id = request_id_var.get()
        if request_id:
            tags["request_id"] = request_id
        return event

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.env,
        release=settings.version,
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *CONTACT_FIELDS], recursive=True),
        # Errors only: no tracing or profiling. Integrations are listed, not discovered, so
        # no database or Redis breadcrumbs (statements with values) are recorded either.
        auto_enabling_integrations=False,
        integrations=_integrations(service),
        before_send=before_send,
    )
    return True


def _integrations(service: Service) -> list[Integration]:
    if service == "api":
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration

        return [StarletteIntegration(), FastApiIntegration()]
    from sentry_sdk.integrations.asyncio import AsyncioIntegration

    return [AsyncioIntegration()]
