"""An endpoint's fields, defined once with their bounds: :class:`EndpointSpec` (what a
new endpoint is made of, from the admin API, the config file, the console or the CLI)
and :class:`EndpointUpdate` (what a change may send). README: "Endpoint types",
"Configuration", "Admin API"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from relaygate.inputs import Input, Text
from relaygate.routes import MAX_EXTRA_ROUTES

MAX_SYNC_INTERVAL = 365 * 24 * 3600.0
"""The longest interval between two syncs of an endpoint (a year): the next sync's time
must stay a representable date."""
MAX_BATCH_CONCURRENCY = 1000
"""The most batch requests an endpoint may be given to run at once per process."""
API_MODES: tuple[str, ...] = ("auto", "native", "translate")

SyncInterval = Annotated[float, Field(gt=0, le=MAX_SYNC_INTERVAL)]
"""Seconds between two syncs of an endpoint: more than zero, at most a year."""


class EndpointTimeouts(Input):
    """An endpoint's own timeouts in seconds; a timeout left out follows the settings."""

    connect: float | None = Field(default=None, gt=0, le=86400)
    first_byte: float | None = Field(
        default=None, gt=0, le=86400, description="From the request to the response headers"
    )
    idle: float | None = Field(
        default=None, gt=0, le=86400, description="Between two chunks of the response"
    )
    total: float | None = Field(default=None, gt=0, le=86400)

    def chosen(self) -> dict[str, float]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


POOL_HELP = "Endpoints of one pool serve their models of the same name together; null: none"
ROUTES_HELP = "Routes forwarded besides the provider type's, e.g. 'POST /tokenize'"


API_MODE_HELP = (
    "How {api} requests reach the endpoint: native (as sent), translate (to the API it "
    "serves), or auto (native until it answers 404/405 for the route, then translated "
    "until its next sync)"
)
ApiMode = Literal["auto", "native", "translate"]
"""How requests in one API reach an endpoint: as they are (``native``), translated to the
API the endpoint serves (``translate``), or natively until the endpoint answers 404 or
405 for the route, then translated until its next sync (``auto``)."""
BATCH_HELP = (
    "Batch requests one relaygate process sends the endpoint at once; null: the "
    "batch_concurrency setting"
)
BatchConcurrency = Annotated[int, Field(ge=1, le=MAX_BATCH_CONCURRENCY, strict=True)]


class EndpointSpec(Input):
    """Everything a new endpoint is made of: the admin API's create body (with ``sync``),
    an entry of the config file's ``endpoints:`` list, and what the services, the console
    and the CLI create endpoints from. ``api_key`` is stored encrypted; ``api_key_env``
    instead names an environment variable read when needed (never stored);
    ``auth_header``/``auth_prefix`` replace the provider's auth header. The rules a field
    alone cannot check (a known type, a reachable URL form, key xor variable) are
    :func:`relaygate.services.endpoints.check_spec`'s."""

    name: Text = Field(min_length=1, max_length=200)
    type: Text = "openai"
    url: Text = Field(max_length=2000, examples=["https://api.openai.com/v1"])
    api_key: Text | None = None
    api_key_env: Text | None = Field(
        default=None,
        max_length=200,
        description="Read the key from this environment variable instead",
    )
    auth_header: Text | None = Field(default=None, description="Custom auth header, e.g. api-key")
    auth_prefix: Text | None = Field(default=None, description="Prefix before the key, e.g. ''")
    model_filter: list[Text] = Field(default_factory=list)
    enabled: bool = True
    requires_user_key: bool = Field(
        default=False, description="No shared key: each user must set their own"
    )
    groups: list[Text] = Field(
        default_factory=lambda: ["everyone"], description="Groups granted the whole endpoint"
    )
    sync_interval: SyncInterval | None = None
    timeouts: EndpointTimeouts | None = None
    pool: Text | None = Field(default=None, max_length=200, description=POOL_HELP)
    extra_routes: list[Text] = Field(
        default_factory=list, max_length=MAX_EXTRA_ROUTES, description=ROUTES_HELP
    )
    messages_api: ApiMode = Field(default="auto", description=API_MODE_HELP.format(api="Messages"))
    responses_api: ApiMode = Field(
        default="auto", description=API_MODE_HELP.format(api="Responses")
    )
    chat_api: ApiMode = Field(default="auto", description=API_MODE_HELP.format(api="chat"))
    batch_concurrency: BatchConcurrency | None = Field(default=None, description=BATCH_HELP)


class EndpointUpdate(Input):
    """Changes to an endpoint (a PATCH body, and what the services, the console and the
    CLI change endpoints with): only the fields sent are changed (:meth:`Input.changes`);
    ``api_key: null`` clears the stored key; setting ``api_key`` or ``api_key_env``
    replaces the other kind; ``auth_header: null`` goes back to the provider's header."""

    # Sent as null, these clear: a key, its variable, the auth header and prefix, the
    # sync interval, timeouts, pool, extra routes and batch concurrency (the others
    # cannot be empty: null leaves them as they are).
    CLEARABLE = frozenset(
        (
            "api_key",
            "api_key_env",
            "auth_header",
            "auth_prefix",
            "sync_interval",
            "timeouts",
            "pool",
            "extra_routes",
            "batch_concurrency",
        )
    )

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    url: Text | None = Field(default=None, max_length=2000)
    api_key: Text | None = None
    api_key_env: Text | None = Field(default=None, max_length=200)
    auth_header: Text | None = None
    auth_prefix: Text | None = None
    model_filter: list[Text] | None = None
    enabled: bool | None = None
    requires_user_key: bool | None = None
    sync_interval: SyncInterval | None = None
    timeouts: EndpointTimeouts | None = Field(
        default=None, description="Replaces the endpoint's own timeouts; null clears them"
    )
    pool: Text | None = Field(default=None, max_length=200, description=POOL_HELP)
    extra_routes: list[Text] | None = Field(
        default=None, max_length=MAX_EXTRA_ROUTES, description=ROUTES_HELP
    )
    messages_api: ApiMode | None = None
    responses_api: ApiMode | None = None
    chat_api: ApiMode | None = None
    batch_concurrency: BatchConcurrency | None = Field(default=None, description=BATCH_HELP)
