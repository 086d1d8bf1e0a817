"""The spec: frozen pydantic models. Their JSON Schema is ``reconcile schema``.

These models are the contract with operators' files: fields may be added, never renamed.
Values in ``env`` are ``SecretStr`` so a stray repr or log line cannot print them.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from reconciler.changes import CLASS_HINT, CLASS_NAME
from reconciler.spec.durations import Duration
from reconciler.spec.forms import (
    IPV4,
    IPV6,
    PORT_NUMBER,
    WHOLE,
    Flag,
    Frozen,
    OrAlso,
    Whole,
    ecma,
    from_file,
    invalid,
)
from reconciler.spec.interpolate import Interpolated
from reconciler.spec.stores import LocalStore, Retention, S3Store
from reconciler.spec.stores import endpoint_problem as endpoint_problem  # storage imports it from here

NAME = r"^[a-z0-9][a-z0-9_.-]*$"
NAMES = {"propertyNames": {"pattern": NAME}}  # JSON Schema of a mapping keyed by names
ENV_NAME = "[^=\\x00]+"  # Docker passes NAME=value: ``A=B: v`` would reach the container as A=B=v
MAX_MEMORY = 2 ** 63 - 1  # Docker keeps a memory limit in bytes, as an int64
MIN_MEMORY = 6 * 1024 ** 2  # "Minimum memory limit allowed is 6MB" (dockerd); 0 is no limit
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


class Kind(StrEnum):
    """How a service is probed, backed up and restored."""

    POSTGRES = "postgres"
    REDIS = "redis"
    HTTP = "http"
    GENERIC = "generic"


BACKUPABLE_KINDS = frozenset({Kind.POSTGRES, Kind.REDIS, Kind.GENERIC})


class Condition(StrEnum):
    HEALTHY = "healthy"
    STARTED = "started"


class Strategy(StrEnum):
    RECREATE = "recreate"
    BLUE_GREEN = "blue-green"


class Compression(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"


class VolumeSpec(Frozen):
    """A named volume; ``bind`` makes it a host folder (created 0700 if missing)."""

    bind: Annotated[str, WithJsonSchema({"type": "string", "pattern": "^/"})] | None = Field(
        None, description="Host folder backing this volume (an absolute path).")
    driver: str = "local"
    driver_opts: dict[str, str] = Field(default_factory=dict)

    @field_validator("bind")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("bind must be an absolute host path, e.g. /srv/data/postgres")
        return value


class NetworkSpec(Frozen):
    driver: str = "bridge"
    internal: Flag = False


MOUNT = r"(?P<source>[^:\s][^:]*):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?"  # matched once stripped


class Mount(Frozen):
    """``source:/target[:ro]``; source is a declared volume name or an absolute host path."""

    source: str
    target: str
    read_only: bool = False

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


def _mount_as_written(value: object, info: ValidationInfo) -> object:
    """A mapping is what ``model_dump`` gives back; in a file, its parts would go unchecked."""
    if isinstance(value, dict) and from_file(info.context):
        raise invalid("a mount is written as text", "write it as 'postgres_data:/var/lib/postgresql/data' "
                                                    "or '/host/path:/path/in/container:ro'")
    return _parse_mount(value)


def _parse_mount(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = re.fullmatch(MOUNT, value.strip())
    if not match:
        raise ValueError("a mount such as 'postgres_data:/var/lib/postgresql/data' or '/host:/ctr:ro'")
    return {"source": match["source"], "target": match["target"],
            "read_only": match["mode"] == "ro"}


MOUNT_SCHEMA = f"^\\s*{ecma(MOUNT)}\\s*$"
MountField = Annotated[Mount, BeforeValidator(_mount_as_written), WithJsonSchema({
    "type": "string", "pattern": MOUNT_SCHEMA,
    "description": "source:/target[:ro|:rw]; source is a declared volume or /host/path",
    "examples": ["postgres_data:/var/lib/postgresql/data"]})]


def _port_form(ipv4: str, ipv6: str, number: str) -> str:
    return (rf"(?:(?P<ip>{ipv4}|\[{ipv6}\]):)?(?:(?P<host>{number}):)?(?P<ctr>{number})"
            r"(?:/(?P<proto>tcp|udp))?")


# Read loosely, so that a bad address or number gets its own message; the schema's form is exact.
_PORT = re.compile(_port_form(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", "[0-9a-fA-F:]+", "[0-9]+"))
PORT_SCHEMA = f"^\\s*{ecma(_port_form(IPV4, IPV6, PORT_NUMBER))}\\s*$"


class Port(Frozen):
    """``[ip:][host:]container[/proto]`` as in Compose."""

    container: int = Field(ge=1, le=65535)
    host: int | None = Field(None, ge=1, le=65535)
    host_ip: str = ""
    protocol: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        host += f"{self.host}:" if self.host else ""
        return f"{host}{self.container}/{self.protocol}"


def _port_as_written(value: object, info: ValidationInfo) -> object:
    """A mapping is what ``model_dump`` gives back; in a file, its host IP would go unchecked. In a
    file, anything but text or a whole number (true, null, 80.5, .inf) is said so, not "a mapping"."""
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    if from_file(info.context) and not (whole or isinstance(value, str)):
        raise invalid("a port is written as a number or as text",
                      "write it as 8080, '8080:3000', '127.0.0.1:5432:5432' or '53/udp'")
    return _parse_port(value)


def _parse_port(value: object) -> object:
    if isinstance(value, float) and value.is_integer():  # 8080.0 is a whole number to JSON Schema
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"container": _port_number(value)}
    if not isinstance(value, str):
        return value
    match = _PORT.fullmatch(value.strip())
    if not match:  # Compose forms this spec does not take get their way round in the hint
        raise invalid("a port such as '8080:3000', '127.0.0.1:5432:5432' or '53/udp'",
                      "write [ip:][host:]container[/tcp|udp]; a range (8080-8081:80-81) is one entry per port, "
                      "and a port published on any free host port is the container port alone (80)")
    if match["ip"]:
        _check_host_ip(match["ip"])
    return {"container": _port_number(int(match["ctr"])),
            "host": _port_number(int(match["host"])) if match["host"] else None,
            "host_ip": (match["ip"] or "").strip("[]"), "protocol": match["proto"] or "tcp"}


def _port_number(number: int) -> int:
    if not 1 <= number <= 65535:
        raise invalid("a port number is from 1 to 65535", "write a port such as 8080, '8080:3000' or "
                                                          "'127.0.0.1:5432:5432' (host:container)")
    return number


def _check_host_ip(text: str) -> None:
    """Docker binds every interface (0.0.0.0 and ::) when the host IP is not an address: a typo
    meant to keep a database on this host only would publish it to the world. The value is
    not repeated (it may be interpolated)."""
    v6 = text.startswith("[")
    try:
        (ipaddress.IPv6Address if v6 else ipaddress.IPv4Address)(text.strip("[]"))
    except ValueError:
        raise invalid(f"the host IP is not a valid IPv{6 if v6 else 4} address",
                      "write the address to publish on, such as 127.0.0.1 (this host only) or [::1]; "
                      "each IPv4 part is a number from 0 to 255") from None


PortField = Annotated[Port, BeforeValidator(_port_as_written), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string", "pattern": PORT_SCHEMA}],
    "description": "[ip:][host:]container[/tcp|udp]", "examples": ["127.0.0.1:5432:5432", "8080:3000"]})]


def _depends_list(value: object) -> object:
    if isinstance(value, list):
        return {name: Condition.STARTED.value for name in value}
    return value


# Docker's reference grammar (distribution/reference): [registry[:port]/]path[:tag][@digest].
_PATH_PART = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
IMAGE = (rf"(?:(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
         r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
         r":[0-9a-fA-F]{32,})?")


def _image_reference(value: str) -> str:
    """Docker refuses a reference outside its grammar (an upper-case repository, a space, an
    empty tag) only once plan or apply asks for the image; validate says so first, at its line.
    The value is not repeated: it may be interpolated."""
    if not re.fullmatch(IMAGE, value):
        raise invalid("not an image reference Docker takes",
                      "write [registry[:port]/]name[:tag][@sha256:…], the name in lower case and "
                      "without spaces, e.g. postgres:16 or ghcr.io/acme/api:1.2")
    return value


ImageRef = Annotated[str, Field(min_length=1), AfterValidator(_image_reference),
                     WithJsonSchema({"type": "string", "minLength": 1, "pattern": f"^{IMAGE}$"})]


class HttpCheck(Frozen):
    port: Whole = Field(ge=1, le=65535)
    path: str = "/"
    timeout: Duration = 5.0
    expect_status: Whole = Field(200, ge=100, le=599)


class HealthSpec(Frozen):
    """How readiness is judged; ``interval``/``timeout`` gate apply after each start."""

    http: HttpCheck | None = None
    interval: Duration = 2.0
    timeout: Duration = 300.0


class DeploySpec(Frozen):
    """How a new version replaces the running one (``reconciler.deploy`` has the details).

    ``recreate`` stops the old container before the new one starts. ``blue-green`` starts
    the new one first and stops the old one only once the new one is ready; for a service
    with ``health.http`` a proxy container (``proxy_image``) holds the published ports and
    is switched to the new container, then the old one drains.
    """

    strategy: Strategy = Strategy.RECREATE
    drain: Duration = Field(30.0, description="blue-green: how long the old container keeps "
                                              "serving in-flight requests after the switch.")
    health_timeout: Duration = 120.0
    stop_grace: Duration = 30.0
    proxy_image: ImageRef = Field("nginx:stable",
                                  description="blue-green HTTP services: the nginx image of the proxy.")
    readiness_delay: Duration = Field(5.0, description="blue-green without any health signal: "
                                                       "how long the new container must keep running.")


class ServiceBackup(Frozen):
    databases: list[str] = Field(default_factory=list)
    critical_tables: list[str] = Field(default_factory=list)
    stop_service: Flag = Field(False, description="Stop a generic service while its volume is archived.")


def _env_name(name: str) -> str:
    if not re.fullmatch(ENV_NAME, name):
        raise invalid("an environment variable name must not be empty or hold '=' or a NUL character",
                      "use a name such as DATABASE_URL (letters, digits and _)")
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]


def _name(name: object) -> object:
    """A project, profile, service, volume or network name, with what to write instead of "should
    match pattern '^…'". A key is checked as a key: the error is at that key's line, whichever
    entry it is (not at the mapping's first one), and every bad name is reported."""
    if isinstance(name, str) and not re.fullmatch(NAME, name):
        lower = name.lower()
        shown = re.fullmatch(NAME, lower) and not isinstance(name, Interpolated)  # may be a secret
        advice = f"rename it, e.g. {lower!r}; " if shown else ""
        raise invalid("a name must be lower-case letters, digits, '_', '.' or '-'",
                      f"{advice}a name starts with a letter or a digit (Docker names containers and "
                      "volumes after it)")
    return name


Name = Annotated[str, AfterValidator(_name)]


class Service(Frozen):
    profile: Annotated[str, BeforeValidator(_name)] = Field("app", pattern=NAME)
    kind: Kind = Kind.GENERIC
    image: ImageRef
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[EnvName, Annotated[SecretStr, OrAlso({"type": ["number", "boolean"]})]] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": f"^{ENV_NAME}$"}})
    env_file: str | None = None
    volumes: list[MountField] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    ports: list[PortField] = Field(default_factory=list)
    depends_on: Annotated[dict[str, Condition], BeforeValidator(_depends_list),
                          OrAlso({"type": "array", "items": {"type": "string"}})] = Field(default_factory=dict)
    stateful: Flag = False
    protect: Flag = False
    backup: ServiceBackup = Field(default_factory=ServiceBackup)
    health: HealthSpec = Field(default_factory=HealthSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    user: str | None = None
    mem_limit: str | None = Field(None, pattern=r"^[0-9]+[bkmg]?$")
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def proxied(self) -> bool:
        """Blue-green behind a proxy: the proxy, not the app container, publishes the ports."""
        return self.deploy.strategy is Strategy.BLUE_GREEN and self.health.http is not None

    @field_validator("mem_limit", mode="before")
    @classmethod
    def _memory_as_written(cls, value: object) -> object:
        """The field's pattern, with what to write instead of "should match pattern '^…'"."""
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9]+[bkmg]?", value)):
            raise invalid("mem_limit is a size such as 512m or 1g",
                          "write a whole number with b, k, m or g after it, in lower case (512m, 2g; not 512M, "
                          "1.5g or 1gb); a number of bytes alone is quoted ('0': no limit)")
        return value

    @field_validator("mem_limit")
    @classmethod
    def _memory_docker_takes(cls, value: str | None) -> str | None:
        """The value is not repeated: it may be interpolated."""
        if value is not None:
            digits = value.rstrip("bkmg")
            if int(digits) * _MEMORY_UNITS[value[len(digits):]] > MAX_MEMORY:
                raise invalid("mem_limit is larger than Docker can take (8 EiB, an int64 of bytes)",
                              "write a size such as 512m or 4g")
            if 0 < int(digits) * _MEMORY_UNITS[value[len(digits):]] < MIN_MEMORY:
                raise invalid("mem_limit is smaller than Docker takes (6m; the engine refuses to create "
                              "the container)", "write a size such as 512m, or '0' for no limit")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else _scalar_text(v) for k, v in value.items()}
        if isinstance(value, list):  # Compose's other form; its items are not repeated (secrets)
            raise invalid("env is a mapping, not a list of NAME=value",
                          "write it as env: {DATABASE_URL: 'postgresql://…', DEBUG: 'true'}, or one NAME: value "
                          "per line under env:")
        return value

    @field_validator("command", "entrypoint", mode="before")
    @classmethod
    def _arguments_as_list(cls, value: object) -> object:
        """Compose splits a line as a shell would; here the arguments are written out, so what
        the container runs is exactly what the file says. The line is not repeated (secrets)."""
        if isinstance(value, str):
            raise invalid("a command is a list of arguments, not one line",
                          "write it as [npm, start], or [sh, -c, 'npm start'] to have a shell read the line")
        return value


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class BackupPolicy(Frozen):
    local: LocalStore = Field(default_factory=LocalStore)
    s3: S3Store = Field(default_factory=S3Store)
    retention: Retention = Field(default_factory=Retention)
    compression: Compression = Compression.ZSTD


def _changes_class(name: str) -> str:
    """``reconcile changes`` refuses such a class (it becomes a ``<name>-changed`` step output),
    so ``validate`` must too, at the key's line. The name is not repeated: the path holds it."""
    if not CLASS_NAME.fullmatch(name):
        raise invalid("a changes class is not a plain name", CLASS_HINT)
    return name


ChangesClass = Annotated[str, AfterValidator(_changes_class)]


class Spec(Frozen):
    """A whole stack. ``source`` is the file it came from (set by the loader, not by users)."""

    version: Annotated[Literal[1], WHOLE] = 1
    project: Annotated[str, BeforeValidator(_name)] = Field(pattern=NAME)
    state_dir: str = ".reconcile"
    volumes: dict[Name, Annotated[VolumeSpec, OrAlso({"type": "null"})]] = Field(
        default_factory=dict, json_schema_extra=NAMES)
    networks: dict[Name, Annotated[NetworkSpec, OrAlso({"type": "null"})]] = Field(
        default_factory=dict, json_schema_extra=NAMES)
    services: dict[Name, Service] = Field(min_length=1, json_schema_extra=NAMES)
    backup: BackupPolicy = Field(default_factory=BackupPolicy)
    changes: dict[ChangesClass, list[str]] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": f"^{CLASS_NAME.pattern}$"}},
        description="Path globs per class (infra, app) for `reconcile changes`.")

    @field_validator("volumes", "networks", mode="before")
    @classmethod
    def _null_is_default(cls, value: object) -> object:
        """``data:`` with nothing after it is ``data: {}``, as in Compose."""
        if isinstance(value, dict):
            return {name: {} if entry is None else entry for name, entry in value.items()}
        return value
