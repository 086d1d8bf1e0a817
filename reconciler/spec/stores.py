"""Where backups go and how long they stay: the local folder, the S3 store, retention."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from reconciler.spec.forms import IPV6, PORT_NUMBER, Flag, Frozen, Whole, invalid

ENDPOINT_HINT = "write http(s)://host[:port], e.g. http://127.0.0.1:9000"
SERVER_ONLY_HINT = ("the endpoint is the server only (https://host); put the bucket in backup.s3.bucket "
                    "(Contabo shows https://host/bucket)")
# What endpoint_trouble accepts, as far as a pattern can say it (the schema checks a literal value)
ENDPOINT = (r"^[hH][tT][tT][pP][sS]?://(?:[^\s/?#]*@)?"
            rf"(?:\[{IPV6}\]|[^\s/?#@:\[\]]+)(?::(?:{PORT_NUMBER}|0+)?)?/?$")
_ENABLED = {"properties": {"enabled": {"const": True}}, "required": ["enabled"]}


class LocalStore(Frozen):
    path: str = "./backups"


class S3Store(Frozen):
    enabled: Flag = False
    endpoint: str | None = None
    region: str = "us-east-1"
    bucket: str = ""
    prefix: str = "backups/"
    path_style: Flag = True
    required: Flag = False
    part_size_mb: Whole = Field(64, ge=5, le=5120, description="Multipart part size.")

    model_config = ConfigDict(
        hide_input_in_errors=True,  # the endpoint may be a secret
        json_schema_extra={"if": _ENABLED, "then": {  # as the field validator and checks._s3 say
            "required": ["bucket"], "properties": {
                "bucket": {"pattern": r"\S"},
                "endpoint": {"anyOf": [{"type": "null"}, {"const": ""}, {"type": "string", "pattern": ENDPOINT}]},
            }}})

    @field_validator("endpoint", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("endpoint")
    @classmethod
    def _usable_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Checked only for an enabled store: a disabled one is never contacted, and its
        endpoint often comes from an env var that is not set for it."""
        if value is not None and info.data.get("enabled") and (trouble := endpoint_trouble(value)):
            raise invalid(f"the S3 endpoint is not a usable URL: {trouble[0]}", trouble[1])
        return value


def endpoint_problem(endpoint: str) -> str | None:
    """Why an S3 endpoint cannot be used, said without repeating it: it is often interpolated
    (a secret for display) and a pasted one may carry a key (``http://host:9000 AKIA…``)."""
    trouble = endpoint_trouble(endpoint)
    return trouble[0] if trouble else None


def endpoint_trouble(endpoint: str) -> tuple[str, str] | None:
    """``endpoint_problem`` and what to write instead.

    A path is refused: every request would be sent under it, so a backup that reports success
    puts its objects in another bucket or under another prefix, where listing and restore
    never look (Contabo's panel shows ``https://host/bucket``, which invites the mistake)."""
    if any(char.isspace() or not char.isprintable() for char in endpoint):
        return "it contains a space or a control character", ENDPOINT_HINT
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "its port is not a number from 0 to 65535 (or its host is malformed)", ENDPOINT_HINT
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://", ENDPOINT_HINT
    if not parts.hostname:
        return "it names no host", ENDPOINT_HINT
    if parts.path not in ("", "/") or "?" in endpoint or "#" in endpoint:
        return "it has a path, a query or a fragment after the host", SERVER_ONLY_HINT
    return None


class Retention(Frozen):
    """Backups kept per period by prune; at least one count must be above 0."""

    daily: Whole = Field(7, ge=0)
    weekly: Whole = Field(4, ge=0)
    monthly: Whole = Field(12, ge=0)
    timezone: str = Field("UTC", description="IANA time zone name (e.g. UTC, Europe/Berlin) "
                                             "in which days, weeks and months are counted.")

    model_config = ConfigDict(json_schema_extra={"not": {  # as checks._retention says
        "required": ["daily", "weekly", "monthly"],
        "properties": {period: {"const": 0} for period in ("daily", "weekly", "monthly")}}})

    @property
    def keeps_anything(self) -> bool:
        return any(count > 0 for count in (self.daily, self.weekly, self.monthly))
