"""relaygate's configuration: the one place that reads the environment.

Sources, strongest first: ``RELAYGATE_*`` environment variables, then the
YAML file (``--config``, else ``RELAYGATE_CONFIG``, else ``./relaygate.yaml``
when present), then the defaults below. String values in the file may use
``${VAR}`` (or ``${VAR:-default}``) to take a value from the environment.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from relaygate.endpoint_spec import MAX_SYNC_INTERVAL, EndpointSpec
from relaygate.errors import ConfigError
from relaygate.secret_keys import WEAK_SECRET_KEY, is_strong_secret
from relaygate.sign_in_settings import OidcProvider, TrustedProxy

ENV_PREFIX = "RELAYGATE_"
DEFAULT_CONFIG_FILE = "relaygate.yaml"
DEFAULT_DATABASE_URL = "sqlite:///./data/relaygate.db"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_ALLOW_WEAK_SECRET_KEY = "allow_weak_secret_key"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class Settings(BaseModel):
    """Every setting relaygate reads; built by :func:`load_settings`.

    Durations are in seconds, sizes in bytes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_file: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    """``json`` writes one JSON object per log line (time, level, name, message,
    request_id)."""
    access_log: bool = True
    """One ``info`` line per proxied request on the ``relaygate.access`` logger."""
    audit_log_json: bool = False
    """Also write each audit-log entry as one JSON line on the ``relaygate.audit`` logger."""
    audit_retention_days: float | None = Field(default=None, ge=1)
    """Audit entries older than this (at least a day) are deleted (in small batches);
    None keeps all."""
    sync_interval: float = Field(default=30.0, gt=0, le=MAX_SYNC_INTERVAL)
    sync_timeout: float = Field(default=10.0, gt=0)
    admin_key: str | None = None
    secret_key: str | None = None
    secret_key_file: str | None = None
    change_poll_interval: float = Field(default=0.5, gt=0)
    key_usage_flush_interval: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    """Largest request header block (each header counted as ``name: value\\r\\n``)."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a request line and headers may take to arrive (408 after, connection closed)."""
    max_admin_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest request body outside ``/v1`` (admin API, console, ops); larger get 413."""
    body_timeout: float = Field(default=60.0, gt=0)
    """Seconds a whole request body may take to arrive once its headers are in (408 after)."""
    refused_body_drain_seconds: float = Field(default=5.0, ge=0)
    """Seconds relaygate goes on reading (and dropping) the body of a request it refused,
    so a client that writes its whole body before reading still reads the answer."""
    max_concurrent_per_key: int = Field(default=250, gt=0)
    """Proxied requests one API key has in flight in one process; more get 429."""
    max_concurrent_per_user: int = Field(default=500, gt=0)
    """Proxied requests one user (all their keys) has in flight in one process; more get 429."""
    max_listing_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    """Largest model listing (each page) an endpoint may answer; larger is a sync error."""
    max_listing_models: int = Field(default=20_000, gt=0)
    """Most models one endpoint's listing may hold (all pages); more is a sync error."""
    max_event_bytes: int = Field(default=1024 * 1024, gt=0)
    """Longest server-sent event relaygate reads for usage; past it the stream's usage is
    not counted and its bytes pass through (counted in a metric)."""
    max_keys_per_user: int = Field(default=100, gt=0)
    """API keys (not revoked) a user may hold; creating more gets 409."""
    max_provider_key_bytes: int = Field(default=4096, gt=0)
    """Longest provider key (an endpoint's or a user's own) relaygate stores."""
    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds to open a connection to an endpoint."""
    upstream_first_byte_timeout: float = Field(default=300.0, gt=0)
    """Seconds from sending a request to the response headers (a whole non-streamed
    completion is generated in this time, so it is long)."""
    upstream_idle_timeout: float = Field(default=120.0, gt=0)
    """Seconds an endpoint may stay silent between two chunks of a response."""
    upstream_total_timeout: float = Field(default=1800.0, gt=0)
    """Seconds one upstream request may take from start to end."""
    upstream_max_connections: int = Field(default=1000, gt=0)
    max_concurrent_requests: int = Field(default=1000, gt=0)
    """Proxied requests one process serves at once; more get 503 at once."""
    failure_threshold: int = Field(default=3, gt=0)
    """Failures in a row after which an endpoint is cooled down (skipped by routing)."""
    cooldown_seconds: float = Field(default=5.0, gt=0)
    """The first cool-down; it doubles on each further failure in a row."""
    max_cooldown_seconds: float = Field(default=300.0, gt=0)
    """The longest cool-down, also the most a ``Retry-After`` from an endpoint is honoured."""
    usage_flush_interval: float = Field(default=1.0, gt=0)
    """Seconds between writes of queued usage records."""
    usage_batch_size: int = Field(default=500, gt=0)
    """Queued usage records that trigger a write before the interval is up, and the most
    written in one transaction."""
    usage_queue_size: int = Field(default=100_000, gt=0)
    """Usage records held while the database is slow; more are dropped and counted."""
    usage_retention_days: float | None = Field(default=None, gt=0)
    """Usage records older than this are deleted (in small batches); None keeps all."""
    responses_retention_days: float = Field(default=30.0, gt=0)
    """Responses relaygate stored for their owners (``store``) are deleted after this."""
    files_dir: str | None = None
    """Directory holding the contents of uploaded and batch output files; None: a
    ``files`` directory beside the SQLite database (``./data/files`` otherwise). Replicas
    must share it (a network volume)."""
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    """Largest file a user may upload (``POST /v1/files``); larger get 413."""
    file_quota_bytes: int = Field(default=10 * 1024 * 1024 * 1024, gt=0)
    """Bytes of files one user may keep at once (uploads and batch outputs)."""
    file_retention_days: float = Field(default=30.0, gt=0)
    """Files are deleted this long after they were made, unless uploaded with an earlier
    ``expires_after``."""
    file_upload_timeout: float = Field(default=3600.0, gt=0)
    """Seconds an upload's whole body may take to arrive (408 after)."""
    batch_max_requests: int = Field(default=50_000, gt=0)
    """Most requests (lines) one batch input file may hold."""
    batch_concurrency: int = Field(default=4, gt=0)
    """Batch requests one process sends one endpoint at once, unless the endpoint sets
    its own ``batch_concurrency``."""
    batch_max_in_flight: int = Field(default=64, gt=0)
    """Batch requests one process has in flight at once, over every endpoint."""
    batch_yield_at: float = Field(default=0.5, gt=0, le=1)
    """Fraction of ``max_concurrent_requests`` past which live requests in flight hold
    back batch requests (none is started until live traffic falls below it)."""
    batch_max_attempts: int = Field(default=5, gt=0, le=100)
    """Times one batch request is sent before a 429 or 5xx answer is its final outcome."""
    batch_retry_seconds: float = Field(default=2.0, gt=0)
    """The first wait before a batch request is retried; it doubles on each attempt (an
    endpoint's ``Retry-After`` is honoured up to ``max_cooldown_seconds``)."""
    batch_max_response_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest answer kept for one batch request (each in flight is held whole until it
    is written); a larger one ends the request with the error ``response_too_large``."""
    batch_lease_seconds: float = Field(default=60.0, gt=0)
    """How long a replica's claim on a batch request (or on a batch being prepared or
    finalized) lasts without being renewed; past it, another replica takes it over."""
    batch_poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between looks for batch work when there was none."""
    drain_timeout: float = Field(default=30.0, ge=0)
    """Seconds a stopping server lets in-flight requests and streams finish."""
    web_session_hours: float = Field(default=12.0, gt=0)
    workers_dir: str | None = None
    """The directory the worker processes of one ``relaygate serve --workers N`` share
    (``metrics/``: Prometheus multiprocess files; ``ratelimit/``: the rate-limit table).
    ``serve`` makes it, sets it for its workers and removes it; not an operator's
    setting. Unset: one process, everything in its memory."""
    redis_url: str | None = None
    """Redis shared by the replicas for rate-limit counters (``redis://``, ``rediss://`` or
    ``unix://``); without it each process counts alone."""
    redis_prefix: str = Field(default="relaygate", min_length=1)
    """Prefix of every Redis key relaygate writes (deployments sharing a Redis differ)."""
    redis_timeout: float = Field(default=0.5, gt=0)
    """Seconds to connect to Redis and for each command; past it, requests fail open."""
    budget_bytes_per_token: float = Field(default=3.0, gt=0)
    """Request-body bytes counted as one prompt token when a budget reserves a request's
    most cost (an estimate, not a tokenizer: JSON and English text run 4 or more bytes
    per token, so 3 reserves more than is used; the answer's usage settles it)."""
    budget_output_tokens: int = Field(default=4096, gt=0, le=10_000_000)
    """Completion tokens reserved for a request that states no cap, when its model has
    neither ``default_output_tokens`` nor ``max_output_tokens``."""
    budget_store_failure: Literal["closed", "open"] = "closed"
    """When Redis fails: ``closed`` refuses requests that a budget applies to (503
    ``budget_store_unavailable``); ``open`` counts them in this process meanwhile."""
    budget_alert_webhook_url: str | None = None
    """Where budget alerts are POSTed as JSON (http:// or https://); None: only logged."""
    budget_alert_thresholds: list[float] = Field(default_factory=lambda: [0.8, 1.0])
    """Fractions of a budget whose crossing alerts, once per budget, threshold and period."""
    api_key_env_patterns: list[str] = Field(
        default_factory=lambda: ["*_API_KEY", "*_API_TOKEN", "*_ACCESS_TOKEN"]
    )
    """Names an endpoint's ``api_key_env`` may take (globs); RELAYGATE_* never."""
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    public_url: str | None = None
    """The address users reach relaygate at (the base of OIDC redirect URIs)."""
    oidc: list[OidcProvider] = Field(default_factory=list)
    trusted_proxy: TrustedProxy | None = None
    console_key_sign_in: bool = True
    """Whether the console's sign-in page accepts an API key."""

    @field_validator("endpoints", mode="before")
    @classmethod
    def _spelled_numbers(cls, value: Any) -> Any:
        """A ``${VAR}`` in the file expands to text: an endpoint's ``batch_concurrency``
        given so is read as the whole number it spells (the admin API, whose schema the
        entries share, takes only a JSON number there)."""
        if not isinstance(value, list):
            return value
        return [
            {**entry, "batch_concurrency": int(entry["batch_concurrency"])}
            if isinstance(entry, dict)
            and isinstance(entry.get("batch_concurrency"), str)
            and entry["batch_concurrency"].strip().isdigit()
            else entry
            for entry in value
        ]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("oidc")
    @classmethod
    def _unique_providers(
        cls, value: list[OidcProvider], info: ValidationInfo
    ) -> list[OidcProvider]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError("provider names must be unique")
        if value and not info.data.get("public_url"):
            raise ValueError("needs public_url (the base of the redirect URIs)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("budget_alert_webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("budget_alert_thresholds")
    @classmethod
    def _thresholds(cls, value: list[float]) -> list[float]:
        if len(value) > 10 or not all(0 < t <= 10 for t in value):
            raise ValueError("must be up to 10 fractions above 0 (1.0 is the whole budget)")
        return sorted(set(value))

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError(
                "must be at least 32 characters (make one with `relaygate secrets generate`)"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _strong_secret_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Empty means unset, as an empty RELAYGATE_SECRET_KEY does. Only `secrets rotate`
        # loads a weak key, to re-encrypt what it protects under a strong one.
        allowed = bool(info.context and info.context.get(_ALLOW_WEAK_SECRET_KEY))
        if value and not allowed and not is_strong_secret(value):
            raise ValueError(WEAK_SECRET_KEY)
        return value

    @property
    def files_path(self) -> Path:
        """The directory of file contents (:attr:`files_dir`, or its default)."""
        if self.files_dir:
            return Path(self.files_dir)
        database = self.sqlite_path
        return (database.parent if database is not None else Path("data")) / "files"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the database is not a SQLite file."""
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        if not path or path == ":memory:":
            return None
        return Path(path)


def read_env_key(name: str) -> str | None:
    """The value of environment variable ``name`` (a provider key an endpoint keeps in the
    environment, ``api_key_env``), or None when unset or empty. Never logged or stored."""
    return os.environ.get(name) or None


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"the config file uses ${{{name}}} but {name} is not set")

        return _VAR.sub(substitute, value)
    if isinstance(value, list):
        return [_expand(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, environ) for key, item in value.items()}
    return value


def _read_file(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings")
    expanded: dict[str, Any] = _expand(raw, environ)
    return expanded


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    allow_weak_secret_key: bool = False,
    **overrides: Any,
) -> Settings:
    """Build the settings from the config file, the environment and explicit overrides.

    ``environ`` defaults to ``os.environ``; ``overrides`` (e.g. from command-line
    flags) win over everything. ``allow_weak_secret_key`` lets a ``secret_key`` that
    :func:`is_strong_secret` refuses through (for ``secrets rotate`` alone). Raises
    :class:`ConfigError` with a one-line message naming what to fix.
    """
    env = os.environ if environ is None else environ
    path_text = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path_text is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path_text = DEFAULT_CONFIG_FILE
    values: dict[str, Any] = {}
    from_env: set[str] = set()
    if path_text:
        values.update(_read_file(Path(path_text), env))
        values["config_file"] = path_text
    for name in Settings.model_fields:
        if name in ("endpoints", "config_file", "oidc", "trusted_proxy"):
            continue
        env_value = env.get(ENV_PREFIX + name.upper())
        if env_value is not None and env_value != "":
            is_list = get_origin(Settings.model_fields[name].annotation) is list
            values[name] = [v.strip() for v in env_value.split(",")] if is_list else env_value
            from_env.add(name)
    explicit = {key: value for key, value in overrides.items() if value is not None}
    values.update(explicit)
    values["oidc"] = _with_client_secrets(values.get("oidc"), env)
    from_env -= explicit.keys()
    try:
        return Settings.model_validate(
            values, context={_ALLOW_WEAK_SECRET_KEY: allow_weak_secret_key}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if where in from_env:
            where_text = f"{where!r} ({ENV_PREFIX}{where.upper()})"
            source = ""
        else:
            where_text = repr(where)
            line = _line_of(Path(path_text), first["loc"]) if path_text else None
            at = f", line {line}" if line else ""
            source = f" (from {path_text}{at})" if path_text else ""
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"unknown setting {where_text}{source}{_did_you_mean(first['loc'])}"
            ) from None
        # A validator's own message is a sentence written for the operator; pydantic's
        # (e.g. "Input should be a valid integer") read better lowercased after the name.
        own = first["type"] == "value_error" and "error" in first.get("ctx", {})
        message = str(first["ctx"]["error"]) if own else first["msg"].lower()
        raise ConfigError(f"setting {where_text} {message}{source}") from None


def _with_client_secrets(providers: Any, env: Mapping[str, str]) -> Any:
    """The ``oidc`` entries with ``client_secret`` read from each one's
    ``client_secret_env``; raises :class:`ConfigError` when that variable is unset, or
    when the file sets ``client_secret`` itself (a secret stays in the environment)."""
    if not isinstance(providers, list):
        return providers if providers is not None else []
    filled = []
    for index, entry in enumerate(providers):
        if not isinstance(entry, dict):
            filled.append(entry)
            continue
        label = f"oidc.{index}"
        if "client_secret" in entry:
            raise ConfigError(
                f"setting '{label}.client_secret' is not accepted: name an environment "
                "variable in client_secret_env instead"
            )
        entry = dict(entry)
        name = entry.get("client_secret_env")
        if name is not None:
            if not isinstance(name, str) or not env.get(name):
                raise ConfigError(
                    f"setting '{label}.client_secret_env' names {name!r}, which is not set"
                )
            entry["client_secret"] = env[name]
        filled.append(entry)
    return filled


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """``; did you mean 'x'?`` for the known setting (or endpoint field) nearest the
    unknown last name of ``loc``, or "" when none is near."""
    name = str(loc[-1])
    nested: dict[Any, type[BaseModel]] = {
        "endpoints": EndpointSpec,
        "oidc": OidcProvider,
        "trusted_proxy": TrustedProxy,
    }
    known = nested.get(loc[0], Settings).model_fields if len(loc) > 1 else Settings.model_fields
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _line_of(path: Path, loc: tuple[int | str, ...]) -> int | None:
    """The line (1-based) of the config file where the value at ``loc`` is written, or
    None when it is not in the file (it came from the environment or a default)."""
    try:
        node: Any = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line: int | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not found:
                return line
            key, node = found[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
