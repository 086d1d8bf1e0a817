"""What every data engine offers, and the values that pass between engines and orchestration.

One ``DataEngine`` per service ``kind``. Engines move RAW streams only: the caller wraps the
output in ``compress.CompressingWriter`` (compression + SHA-256) and the input in
``compress.DecompressingReader``, so every engine gets checksums and both compressions for
free and the storage layer never needs to know what a dump is.

Secrets: a ``Target`` carries the service's credentials in fields excluded from ``repr``;
every message an engine builds from foreign text (stderr, driver errors) goes through
``Target.redact`` first, so a password cannot reach a log, an exception or a metadata file.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, BinaryIO, Protocol, runtime_checkable

from reconciler.engines.compress import ZstdTuning
from reconciler.engines.tarscan import TreeDigest
from reconciler.operate.redact import SECRET_NAME, url_passwords
from reconciler.spec.models import Kind, Service

DEFAULT_PORT = {Kind.POSTGRES: 5432, Kind.REDIS: 6379}
_REDIS_PASSWORD_ENV = ("REDIS_PASSWORD", "DFLY_requirepass", "DFLY_REQUIREPASS")


class ProbeStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"  # the server answers but turns down the spec's credentials or database


@dataclass(frozen=True)
class Target:
    """One running service as an engine reaches it: from this host, by the container's IP."""

    service_name: str
    service: Service = field(repr=False)
    container_id: str
    host: str
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""  # PostgreSQL: the one the image creates (POSTGRES_DB, else the user)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # the container's, as it runs

    def redact(self, text: str) -> str:
        """``text`` with every secret of the service replaced by ``***``."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def secrets(self) -> list[str]:
        """The password, env values named like a secret, and the password part of any URL in
        the env (``DATABASE_URL``, ``*_DSN``): the rest of a URL is a host name, not a secret;
        nor is the path a ``*_FILE`` variable names (its content is the password). The env of
        the running container and the spec's: after a rotation they hold different secrets."""
        values = {self.password}
        for env in (self.env, {k: v.get_secret_value() for k, v in self.service.env.items()}):
            values |= {v for k, v in env.items() if SECRET_NAME.search(k) and not k.endswith("_FILE")}
            values |= {p for v in env.values() for p in url_passwords(v)}
        return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    @property
    def kind(self) -> Kind:
        return self.service.kind


def container_ip(doc: dict) -> str:
    """The first IP of an inspect document that the host reaches the container on (bridge
    networks on Linux). Here, not in ``dockerio``: a cache is reached without the Docker SDK."""
    networks = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    for settings in networks.values():
        if settings.get("IPAddress"):
            return str(settings["IPAddress"])
    return str((doc.get("NetworkSettings") or {}).get("IPAddress") or "")


def make_target(service_name: str, service: Service, container_id: str, host: str,
                read_file: Callable[[str], str] | None = None, config: Mapping | None = None) -> Target:
    """A ``Target`` with credentials and port as the server in the container starts: its
    command line first (it overrides the environment), then its env. ``config`` is the
    container's own (inspect ``Config``): a server runs with the command line and env its
    container was made with, which the spec may since have changed (a cache password rotated
    in the spec is the server's only once apply has recreated it). Without one, the spec's.
    ``read_file`` reads a file inside the container, for ``*_FILE`` variables (Docker secrets)."""
    env = {k: v.get_secret_value() for k, v in service.env.items()}
    args = [*(service.entrypoint or ()), *(service.command or ())]
    if config is not None:
        running_env = env_of(config.get("Env"))
        running_args = [*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ())]
    else:
        running_env, running_args = env, args
    if service.kind is Kind.POSTGRES:
        # the port is the running server's; user, password and database are the data's, set
        # once by initdb: the spec is the operator's word on them (a password changed with
        # ALTER ROLE is put in the spec, not in a container that still holds the old one)
        port = _port(_last_option(running_args, ("-p", "--port"), setting="port") or running_env.get("PGPORT"),
                     service.kind)
        user = _env_or_file(env, "POSTGRES_USER", read_file) or "postgres"
        return Target(service_name, service, container_id, host, port, user=user,
                      password=_env_or_file(env, "POSTGRES_PASSWORD", read_file) or "",
                      database=_env_or_file(env, "POSTGRES_DB", read_file) or user, env=running_env)
    if service.kind is Kind.REDIS:
        # The official redis image takes a password only as --requirepass; images that read
        # REDIS_PASSWORD turn it into one; dragonfly also reads its flags from DFLY_<flag>.
        password = _last_option(running_args, ("--requirepass",))
        if password is None:
            password = next((value for name in _REDIS_PASSWORD_ENV
                             if (value := _env_or_file(running_env, name, read_file))), "")
        port = _port(_last_option(running_args, ("--port",)) or running_env.get("DFLY_port"), service.kind)
        return Target(service_name, service, container_id, host, port, password=password, env=running_env)
    if service.kind is Kind.HTTP and service.health.http is not None:
        return Target(service_name, service, container_id, host, service.health.http.port, env=running_env)
    return Target(service_name, service, container_id, host, DEFAULT_PORT.get(service.kind, 0), env=running_env)


def env_of(pairs: object) -> dict[str, str]:
    """An inspect document's ``Env`` (``["NAME=value", …]``) as a mapping."""
    return dict(item.split("=", 1) for item in pairs or () if isinstance(item, str) and "=" in item)


def _env_or_file(env: dict[str, str], name: str, read_file: Callable[[str], str] | None) -> str | None:
    """``NAME``, else what the file ``NAME_FILE`` names inside the container holds, without its
    trailing newlines (the official images' convention for Docker secrets)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path and read_file is not None:
        return read_file(path).rstrip("\n")
    return None


def _last_option(args: list[str], flags: tuple[str, ...], setting: str | None = None) -> str | None:
    """The value of the last of ``flags`` on a command line (``-p 5433``, ``--port=5433``), or
    of PostgreSQL's ``-c setting=value``: the server takes the last one it is given."""
    found = None
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else None
        if arg in flags and following is not None:
            found = following
        elif "=" in arg and arg.split("=", 1)[0] in flags:
            found = arg.split("=", 1)[1]
        elif setting and arg == "-c" and following and following.startswith(setting + "="):
            found = following.split("=", 1)[1]
        elif setting and arg.startswith(f"-c{setting}="):
            found = arg.split("=", 1)[1]
    return found


def _port(value: str | None, kind: Kind) -> int:
    """A port the server would accept; anything else stays the default (the server refuses to
    start on it, and health says so)."""
    if value is not None and value.strip().isdigit() and 0 < int(value) < 65536:
        return int(value)
    return DEFAULT_PORT[kind]


def postgres_databases(target: Target) -> list[str]:
    """``backup.databases``, else the one the image creates (``POSTGRES_DB``, else the user)."""
    if target.service.backup.databases:
        return list(target.service.backup.databases)
    return [target.database or target.user or "postgres"]


@dataclass(frozen=True)
class ProbeResult:
    status: ProbeStatus
    details: Mapping[str, object] = field(default_factory=dict)
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.HEALTHY

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status.value, "details": dict(self.details),
                "latency_ms": round(self.latency_ms, 1)}


class LocaleProvider(StrEnum):
    """PostgreSQL's ``datlocprovider`` (``c``, ``i``, ``b``), in words."""

    LIBC = "libc"
    ICU = "icu"
    BUILTIN = "builtin"


@dataclass(frozen=True)
class DatabaseLocale:
    """What a PostgreSQL database sorts and classifies text by, fixed when it is created:
    a restore must create it the same way, or ``ORDER BY`` answers change. ``locale`` is the
    ICU or builtin provider's locale; ``icu_rules`` are ICU tailoring rules (16+)."""

    collate: str
    ctype: str
    provider: LocaleProvider = LocaleProvider.LIBC
    locale: str | None = None
    icu_rules: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> DatabaseLocale | None:
        """None for metadata written before the locale was recorded (restored as before)."""
        if not data:
            return None
        return cls(str(data["collate"]), str(data["ctype"]), LocaleProvider(data.get("provider", "libc")),
                   _optional_str(data.get("locale")), _optional_str(data.get("icu_rules")))


@dataclass(frozen=True)
class DatabaseStats:
    """One PostgreSQL database as dumped: exact rows per table from the dump's snapshot, keyed
    ``schema.table`` (a part that needs quoting in SQL is quoted: ``s."a.b"``, so no two
    tables share a key), its encoding and (since it was recorded) its locale. ``orphan_rows``:
    rows a ``NOT VALID`` foreign key let in (by constraint key, only those with some), data the
    dump holds and a restore brings back, so verify expects them. ``large_objects``: how many
    (``None`` in backups made before it was counted)."""

    name: str
    size_bytes: int
    tables: Mapping[str, int] = field(default_factory=dict)
    encoding: str = "UTF8"
    locale: DatabaseLocale | None = None
    orphan_rows: Mapping[str, int] = field(default_factory=dict)
    large_objects: int | None = None


@dataclass(frozen=True)
class BackupStats:
    """Kind-specific facts of one backup, for the metadata JSON and for verify after restore.

    ``raw_bytes`` is the uncompressed stream length. Postgres fills ``databases`` (the
    aggregate properties below derive from it); the cache fills ``key_count``,
    ``keys_per_db`` and ``expiring_per_db`` (keys with a TTL, which may be gone by the time
    of a restore); volumes fill ``paths``, ``file_count``, ``content_bytes`` and ``tree``
    (digests of every member's path, type, mode, owner and content; ``None`` in backups
    made before it existed, which verify by the counts alone).
    """

    kind: Kind
    raw_bytes: int = 0
    databases: tuple[DatabaseStats, ...] = ()
    key_count: int | None = None
    keys_per_db: Mapping[int, int] = field(default_factory=dict)
    expiring_per_db: Mapping[int, int] = field(default_factory=dict)
    expired_skipped: int = 0
    memory_bytes: int | None = None
    paths: tuple[str, ...] = ()
    file_count: int | None = None
    content_bytes: int | None = None
    tree: TreeDigest | None = None

    @property
    def database_size(self) -> int | None:
        return sum(d.size_bytes for d in self.databases) if self.databases else self.memory_bytes

    @property
    def tables(self) -> dict[str, int]:
        """Rows per table; keys as in ``DatabaseStats.tables``, prefixed ``db/`` when several databases."""
        several = len(self.databases) > 1
        return {(f"{d.name}/{t}" if several else t): rows
                for d in self.databases for t, rows in d.tables.items()}

    @property
    def table_count(self) -> int | None:
        return sum(len(d.tables) for d in self.databases) if self.databases else None

    @property
    def row_count(self) -> int | None:
        return sum(sum(d.tables.values()) for d in self.databases) if self.databases else None

    def as_dict(self) -> dict[str, object]:
        """The metadata fields (seed names first) plus what ``from_dict`` needs to rebuild."""
        data = {"kind": self.kind.value, "raw_bytes": self.raw_bytes,
                "database_size": self.database_size}
        if self.databases:
            data |= {"table_count": self.table_count, "row_count": self.row_count,
                     "tables": self.tables, "databases": [asdict(d) for d in self.databases]}
        if self.key_count is not None:
            data |= {"key_count": self.key_count, "expired_skipped": self.expired_skipped,
                     "keys_per_db": {str(k): v for k, v in self.keys_per_db.items()},
                     "expiring_per_db": {str(k): v for k, v in self.expiring_per_db.items()}}
        if self.paths:
            data |= {"paths": list(self.paths), "file_count": self.file_count,
                     "content_bytes": self.content_bytes}
            if self.tree is not None:
                data["tree_digest"] = self.tree.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BackupStats:
        databases = tuple(DatabaseStats(d["name"], int(d["size_bytes"]), dict(d["tables"]),
                                        d.get("encoding", "UTF8"), DatabaseLocale.from_dict(d.get("locale")),
                                        dict(d.get("orphan_rows") or {}), _optional_int(d.get("large_objects")))
                          for d in data.get("databases") or [])  # type: ignore[union-attr]
        keys = data.get("keys_per_db") or {}
        expiring = data.get("expiring_per_db") or {}
        key_count = data.get("key_count")
        return cls(kind=Kind(data["kind"]), raw_bytes=int(data.get("raw_bytes") or 0),
                   databases=databases,
                   key_count=None if key_count is None else int(key_count),  # type: ignore[arg-type]
                   keys_per_db={int(k): int(v) for k, v in keys.items()},  # type: ignore[union-attr]
                   expiring_per_db={int(k): int(v) for k, v in expiring.items()},  # type: ignore[union-attr]
                   expired_skipped=int(data.get("expired_skipped") or 0),  # type: ignore[arg-type]
                   memory_bytes=None if databases else data.get("database_size"),  # type: ignore[arg-type]
                   paths=tuple(data.get("paths") or ()),  # type: ignore[arg-type]
                   file_count=_optional_int(data.get("file_count")),
                   content_bytes=_optional_int(data.get("content_bytes")),
                   tree=TreeDigest.from_dict(data.get("tree_digest")))


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class VerifyCheck:
    name: str
    expected: object
    actual: object
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[VerifyCheck, ...] = ()
    backup_id: str = ""  # the backup checked against, once known

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[VerifyCheck]:
        return [c for c in self.checks if not c.ok]

    def summary(self, limit: int = 5) -> str:
        """The first failed checks in words, for an error message."""
        failed = self.failures
        text = "; ".join(f"{c.name}: expected {c.expected}, found {c.actual}" for c in failed[:limit])
        return text + (f" (and {len(failed) - limit} more)" if len(failed) > limit else "")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}
        if self.backup_id:
            out["backup_id"] = self.backup_id
        return out


@dataclass(frozen=True)
class RestoreStats:
    """What a restore did; ``verify`` is the check the engine ran right after it."""

    kind: Kind
    raw_bytes: int = 0
    tables_restored: int | None = None
    rows_restored: int | None = None
    keys_restored: int | None = None
    keys_skipped_expired: int = 0
    seconds: float = 0.0
    verify: VerifyReport | None = None

    def as_dict(self) -> dict[str, object]:
        """The fields that mean something for this kind: a PostgreSQL or volume restore has no
        keys to skip, so ``keys_skipped_expired: 0`` there would only mislead a reader."""
        own = _RESTORE_FIELDS.get(self.kind, ())
        data: dict[str, object] = {"kind": self.kind.value, "raw_bytes": self.raw_bytes}
        data |= {name: getattr(self, name) for name in own if getattr(self, name) is not None}
        data["seconds"] = self.seconds
        if self.verify is not None:
            data["verify"] = self.verify.as_dict()
        return data


_RESTORE_FIELDS: Mapping[Kind, tuple[str, ...]] = {
    Kind.POSTGRES: ("tables_restored", "rows_restored"),
    Kind.REDIS: ("keys_restored", "keys_skipped_expired"),
}


class DockerBacked:
    """An engine that runs helpers or execs in containers: it connects to Docker lazily, so
    building one costs nothing and a probe of a remote cache never needs the engine."""

    def __init__(self, client=None, connect: Callable[[], Any] | None = None) -> None:
        self._client = client
        self._connect = connect

    @property
    def client(self):
        if self._client is None:
            if self._connect is None:
                from reconciler import dockerio

                self._connect = dockerio.connect
            self._client = self._connect()
        return self._client


@runtime_checkable
class DataEngine(Protocol):
    """Probe, back up, restore and verify one kind of service.

    ``backup`` writes the raw stream into ``out`` and raises ``BackupError`` on any doubt
    (a failed process, a missing end marker): a partial stream is never a success, and the
    caller must then discard ``out``. ``restore`` reads a raw stream until ``b""``; it
    commits nothing before the stream ended cleanly when the kind allows it (postgres).
    """

    file_extension: str
    zstd: ZstdTuning  # how hard to compress this kind's stream

    def probe(self, target: Target, timeout: float = 5.0) -> ProbeResult: ...

    def backup(self, target: Target, out: BinaryIO) -> BackupStats: ...

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats: ...

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport: ...

    def estimate_size(self, target: Target) -> int: ...


def cause_text(exc: BaseException, target: Target) -> str:
    """Why a stream was aborted (the local error behind it), redacted, on one line."""
    cause = exc.__cause__ or exc
    return target.redact(one_line(str(cause))) or type(cause).__name__


def one_line(text: str, limit: int = 300) -> str:
    """Collapse stderr to one short line for a message (after redaction)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    joined = " | ".join(lines[-4:])
    return re.sub(r"\s+", " ", joined)[:limit]


def failure_detail(exit_code: int, stderr: str) -> str:
    """Why a client failed, for the error: how it ended (when a signal ended it), then what it said.

    A killed pg_dump writes nothing, and "failed (exit 137): " told the operator nothing;
    137 is 128 + 9, the shell's and Docker's way of saying SIGKILL (out of memory, or
    stopped from outside). A negative code is Python's way of saying the same, except -1,
    which dockerio uses when the engine never reported the code.
    """
    said = one_line(stderr)
    signum = _signal_of(exit_code)
    if signum is None:
        return said or "no error output"
    try:
        killed = f"killed by signal {signum} ({signal.Signals(signum).name})"
    except ValueError:  # a real-time signal has no name of its own
        killed = f"killed by signal {signum}"
    return f"{killed}; {said}" if said else killed


def _signal_of(exit_code: int) -> int | None:
    if exit_code < -1:
        return -exit_code
    if 128 < exit_code < 128 + signal.NSIG:
        return exit_code - 128
    return None
