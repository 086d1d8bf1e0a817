"""Generic stateful services: container probe, and a tar archive of their writable mounts.

The archive is made by a short-lived helper container started from the image the service
RUNS, with ``--volumes-from`` the service container (read-only), so it sees every volume
and bind mount at the same path, also while the service is stopped, and needs nothing on
the host. Read-only mounts (configuration) are not data and are left out. Members are
stored relative to ``/`` (``var/lib/app/…``) with numeric owners, so a restore puts back
paths, modes and owners exactly; where the image has GNU tar, in pax format with sparse
files kept sparse and modification times to the nanosecond (``tarformat``: the command,
the fallback for other tars, and the note in the metadata of how an archive was written).

``backup.stop_service`` stops the service for the moment of the copy (a consistent copy of
files an application writes) and ALWAYS starts it again, also when archiving fails. A
restore always stops a running service while its folders are wiped and refilled, and starts
it again only once the folders match the backup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import BinaryIO

from reconciler import dockerio
from reconciler.engines import fifo
from reconciler.engines.base import (
    BackupStats,
    DockerBacked,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyCheck,
    VerifyReport,
    cause_text,
    failure_detail,
    one_line,
)
from reconciler.engines.compress import ZSTD_DEFAULT
from reconciler.engines.tarformat import (
    NO_SPARSE_TAR,
    VERSION_COMMAND,
    ArchiveNote,
    RestoreRefused,
    create_command,
    extract_command,
    sparse_refused,
    unpacks_sparse,
    without_marker,
    written_with,
)
from reconciler.engines.tarscan import (
    ASPECTS,
    TarMember,
    TarScanner,
    TreeDigest,
    TreeDigestBuilder,
)
from reconciler.errors import BackupError, EngineError, RestoreError
from reconciler.spec.models import Kind
from reconciler.spec.normalise import LABEL_CONFIG, LABEL_PROJECT, volume_of

# A restore that fails or is interrupted leaves the service stopped: started, it would work on
# (and write to) a partial copy of its data; ``restoring`` keeps it from being started.
_LEFT = "left stopped until a restore of it succeeds"
ROOT = "0:0"  # root in the helper can read every file and open our 0600 pipe
_WIPE = 'for d in "$@"; do rm -rf "$d"/* "$d"/.[!.]* "$d"/..?*; done'


class VolumeEngine(DockerBacked):
    file_extension = "tar"
    zstd = ZSTD_DEFAULT

    def probe(self, target: Target, timeout: float = 5.0) -> ProbeResult:
        return container_probe(self.client, target)

    def estimate_size(self, target: Target) -> int:
        """``du`` of the mounts, read by a helper (one quick pass over the file tree)."""
        chunks: list[bytes] = []
        result = self._helper_exec(target, ["du", "-sk", *self._paths(target)], chunks.append,
                                   read_only=True)
        if result.exit_code != 0:
            return 0
        return sum(int(line.split()[0]) * 1024 for line in b"".join(chunks).decode().splitlines()
                   if line.strip())

    def backup(self, target: Target, out: BinaryIO) -> BackupStats:
        paths = self._paths(target)
        if not paths:
            raise BackupError(f"service {target.service_name} has no writable volume to archive",
                              ref="backup.no-data", hint="list its data volumes under volumes:")
        counter = _Counter(out.write, paths)
        with self._stopped(target, target.service.backup.stop_service):
            result = self._archive(target, paths, counter)
        counts = counter.scanner.counts()
        if result.exit_code != 0:
            raise BackupError(f"archiving the volumes of {target.service_name} failed "
                              f"(exit {result.exit_code}): "
                              f"{failure_detail(result.exit_code, _stderr(target, result))}",
                              ref="backup.tar", hint="see tar's message; the partial archive is discarded")
        if not counter.scanner.ended:
            raise BackupError(f"the archive of {target.service_name} is incomplete (no end blocks)",
                              ref="backup.truncated", hint="tar stopped early; the archive is discarded")
        note = written_with(result.stderr, counter.scanner.sparse_files)
        return BackupStats(Kind.GENERIC, raw_bytes=counter.count, paths=tuple(paths),
                           file_count=counts.entries, content_bytes=counts.content_bytes,
                           tree=replace(counter.tree.digest(), archive=note.as_dict()))

    def _archive(self, target: Target, paths: list[str],
                 sink: Callable[[bytes], object]) -> dockerio.ExecResult:
        relative = [p.lstrip("/") for p in paths]
        try:
            return self._stream_out(target, lambda path: create_command(path, relative), sink)
        except dockerio.StreamAborted as exc:
            raise BackupError(f"archiving the volumes of {target.service_name} aborted: "
                              f"{cause_text(exc, target)}", ref="backup.stream",
                              hint="check free space and the backup destination") from None

    def restore_precheck(self, target: Target, stats: BackupStats) -> None:
        """Refuse, before anything is stopped or wiped, a backup of folders the container does
        not mount (the spec moved a volume since): its files would land in the helper only; and
        one holding sparse files when the image's tar cannot unpack them (one helper asks)."""
        doc = dockerio.inspect_container(self.client, target.container_id)
        if missing := unmounted(list(stats.paths) or writable_paths(target, doc), doc):
            mounted = ", ".join(writable_paths(target, doc)) or "none"
            raise RestoreError(f"the backup holds {', '.join(missing)}, which {target.service_name}'s container "
                               f"does not mount (it mounts {mounted})", ref="restore.paths",
                               hint="mount the volume at that path again to restore this backup, or restore "
                                    "its archive by hand; nothing was stopped or changed")
        note = ArchiveNote.of(stats.tree)
        if note.sparse_files:
            version: list[bytes] = []
            self._helper_exec(target, VERSION_COMMAND, version.append, read_only=True)
            if not unpacks_sparse(b"".join(version)):
                raise sparse_refused(target.service_name, note, "nothing was stopped or changed")

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats:
        started = time.monotonic()
        paths = list(stats.paths) or writable_paths(target)
        running = _state(self.client, target.container_id).get("Running", False)
        if running:
            dockerio.stop(self.client, target.container_id, target.service.deploy.stop_grace)
        try:
            report = self._refill(target, paths, stream, stats)
        except RestoreRefused as exc:
            if running:
                dockerio.start(self.client, target.container_id)
            raise RestoreError(exc.message, ref=exc.ref, hint=exc.hint) from None
        except KeyboardInterrupt as stop:
            stop.add_note(f"{target.service_name}'s volumes were being replaced in place: they hold "
                          f"part of the backup, and the service is {_LEFT}")
            raise
        except RestoreError as exc:
            left = f"the service is {_LEFT}"
            raise RestoreError(exc.message, ref=exc.ref, hint=f"{exc.hint}; {left}" if exc.hint else left) from None
        if running:
            dockerio.start(self.client, target.container_id)
        return RestoreStats(Kind.GENERIC, raw_bytes=stats.raw_bytes,
                            seconds=round(time.monotonic() - started, 3), verify=report)

    def _refill(self, target: Target, paths: list[str], stream: BinaryIO, stats: BackupStats) -> VerifyReport:
        """Wipe and unpack, then compare with the backup before the service can change a file."""
        note = ArchiveNote.of(stats.tree)
        result = self._unpack(target, paths, stream, sparse=note.sparse_files > 0)
        if result.exit_code == NO_SPARSE_TAR:
            raise sparse_refused(target.service_name, note, "nothing was wiped")
        if result.exit_code != 0:
            raise RestoreError(f"restoring the volumes of {target.service_name} failed "
                               f"(exit {result.exit_code}): "
                               f"{failure_detail(result.exit_code, _stderr(target, result))}",
                               ref="restore.tar", hint="the volumes may be partly restored; restore again")
        report = self.verify(target, stats)
        if not report.ok:
            raise RestoreError(f"the restored volumes do not match the backup: {report.summary()}",
                               ref="restore.verify", hint="restore again, or from another backup")
        return report

    def _unpack(self, target: Target, paths: list[str], stream: BinaryIO, sparse: bool) -> dockerio.ExecResult:
        source = _chunks(stream)
        image = self._image(target)
        try:
            return fifo.stream_in(
                self.client, image, lambda path: extract_command(path, paths, _WIPE, sparse), _lead(source),
                {"volumes_from": target.container_id, "read_only": False},
                lambda rest: dockerio.run_helper(self.client, image, extract_command("-", paths, _WIPE, sparse),
                                                 volumes_from=target.container_id, read_only=False,
                                                 source=rest))
        except dockerio.StreamAborted as exc:
            if isinstance(exc.__cause__, RestoreError):
                raise exc.__cause__ from None
            raise RestoreError(f"restoring the volumes of {target.service_name} aborted: "
                               f"{cause_text(exc, target)}", ref="restore.stream",
                               hint="the volumes may be partly restored; restore again") from None

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport:
        """Re-archive the folders (streamed and scanned, never stored) and compare: entries and
        file bytes, then, when the backup recorded one, the tree digest (content, owners, modes:
        what a same-size edit or a chown changes and the counts cannot see)."""
        if not expected.paths:
            return VerifyReport()
        recorded = [p.lstrip("/") for p in expected.paths]
        live = [p.lstrip("/") for p in _moved(list(expected.paths), self._paths(target))]
        tree = TreeDigestBuilder(recorded)
        scanner = TarScanner(_as_recorded(tree.add, dict(zip(live, recorded, strict=True))))
        try:
            result = self._stream_out(target, lambda path: create_command(path, live), scanner.feed)
        except dockerio.StreamAborted:
            result = dockerio.ExecResult(-1, b"")
        where = ", ".join(expected.paths)
        if result.exit_code != 0 or not scanner.ended:
            return VerifyReport((VerifyCheck(f"archive of {where}", "readable", "unreadable", False),))
        counts = scanner.counts()
        checks = (
            VerifyCheck(f"entries in {where}", expected.file_count, counts.entries,
                        expected.file_count in (None, counts.entries)),
            VerifyCheck(f"file bytes in {where}", expected.content_bytes, counts.content_bytes,
                        expected.content_bytes in (None, counts.content_bytes)))
        if expected.tree is not None:
            checks += tree_checks(expected.tree, tree.digest(), where)
        return VerifyReport(checks)

    # -- helpers -----------------------------------------------------------------------------

    def _stream_out(self, target: Target, cmd_for: Callable[[str], list[str]],
                    sink: Callable[[bytes], object]) -> dockerio.ExecResult:
        image = self._image(target)
        return fifo.stream_out(
            self.client, image, cmd_for, sink,
            {"volumes_from": target.container_id, "read_only": True},
            lambda: dockerio.run_helper(self.client, image, cmd_for("-"), volumes_from=target.container_id,
                                        read_only=True, sink=sink))

    def _helper_exec(self, target: Target, cmd: list[str], sink: Callable[[bytes], object],
                     read_only: bool) -> dockerio.ExecResult:
        return dockerio.run_helper(self.client, self._image(target), cmd,
                                   volumes_from=target.container_id, read_only=read_only, sink=sink)

    def _image(self, target: Target) -> str:
        return str(dockerio.inspect_container(self.client, target.container_id)["Image"])

    def _paths(self, target: Target) -> list[str]:
        return writable_paths(target, dockerio.inspect_container(self.client, target.container_id))

    @contextmanager
    def _stopped(self, target: Target, stop: bool) -> Iterator[None]:
        """Stop the service if asked and running; start it again whatever happens inside."""
        running = _state(self.client, target.container_id).get("Running", False)
        if not (stop and running):
            yield
            return
        dockerio.stop(self.client, target.container_id, target.service.deploy.stop_grace)
        try:
            yield
        finally:
            dockerio.start(self.client, target.container_id)


def writable_paths(target: Target, doc: dict | None = None) -> list[str]:
    """Container paths of the service's writable mounts, in spec order. With the container's
    inspect ``doc``: where IT mounts each of them, since the spec may have moved one since the
    container was made (``data:/srv/data`` → ``data:/srv/data2``: the old container still
    has the data at /srv/data); one it does not mount (new in the spec) holds nothing yet."""
    wanted = [m for m in target.service.volumes if not m.read_only]
    if doc is None:
        return [m.target for m in wanted]
    project = ((doc.get("Config") or {}).get("Labels") or {}).get(LABEL_PROJECT, "")
    mounts = [m for m in doc.get("Mounts") or () if m.get("RW", True)]
    paths: list[str] = []
    made = _made_paths(doc, len(wanted))
    for index, mount in enumerate(wanted):
        same = [m["Destination"] for m in mounts if _holds(m, mount.source, project)]
        found = same[0] if same else next((m["Destination"] for m in mounts if m.get("Destination") == mount.target),
                                          made[index] if made else None)
        if found is not None and found not in paths:
            paths.append(found)
    return paths


def _made_paths(doc: dict, count: int) -> list[str]:
    """The writable mount paths the container was made with (its config label, spec order),
    when it had as many as the spec has now: a volume renamed and moved at once
    (``data:/srv/data`` → ``data2:/srv/new``) is the one at the same place (QA: its backup
    found nothing to archive). Empty when the counts differ or the label is unreadable."""
    label = ((doc.get("Config") or {}).get("Labels") or {}).get(LABEL_CONFIG) or "{}"
    try:
        volumes = [v for v in json.loads(label).get("volumes") or () if not v.get("read_only")]
        return [str(v["target"]) for v in volumes] if len(volumes) == count else []
    except (ValueError, TypeError, AttributeError, KeyError):
        return []


def _holds(mount: dict, source: str, project: str) -> bool:
    """Whether a container mount is the spec's ``source``: a declared volume (any generation of
    it) or a host folder."""
    if source.startswith("/"):
        return mount.get("Type") == "bind" and mount.get("Source") == source
    return mount.get("Type") == "volume" and volume_of(mount.get("Name") or "", project) == source


def _moved(recorded: list[str], mounted: list[str]) -> list[str]:
    """Where the container has the folders a backup recorded: each where it was, or, when the
    spec moved volumes (as many as before, in spec order), where the same volume is now."""
    if all(path in mounted for path in recorded) or len(recorded) != len(mounted):
        return recorded
    return [path if path in mounted else mounted[index] for index, path in enumerate(recorded)]


def _as_recorded(add: Callable[[TarMember], None], names: dict[str, str]) -> Callable[[TarMember], None]:
    """``add``, with members of a moved folder named as the backup recorded them."""
    moved = {live: old for live, old in names.items() if live != old}
    if not moved:
        return add

    def renamed(member: TarMember) -> None:
        path = member.path.rstrip("/")
        for live, old in moved.items():
            if path == live or path.startswith(live + "/"):
                member = replace(member, path=old + path[len(live):])
                break
        add(member)
    return renamed


def unmounted(paths: list[str], doc: dict) -> list[str]:
    """The ``paths`` a backup holds that the container does not mount writable."""
    mounted = {m.get("Destination") for m in doc.get("Mounts") or () if m.get("RW", True)}
    return [path for path in paths if path not in mounted]


def container_probe(client, target: Target) -> ProbeResult:
    """Running, and the Docker healthcheck's verdict when the image has one."""
    started = time.monotonic()
    try:
        state = _state(client or dockerio.connect(), target.container_id)
    except EngineError as exc:
        return ProbeResult(ProbeStatus.UNREACHABLE, {"error": exc.message}, _ms(started))
    health = (state.get("Health") or {}).get("Status", "none")
    details = {"state": state.get("Status", "unknown"), "health": health,
               "restarting": bool(state.get("Restarting")), "exit_code": state.get("ExitCode")}
    if not state.get("Running") or state.get("Restarting"):
        status = ProbeStatus.UNHEALTHY
    else:
        status = {"healthy": ProbeStatus.HEALTHY, "none": ProbeStatus.HEALTHY,
                  "starting": ProbeStatus.DEGRADED}.get(health, ProbeStatus.UNHEALTHY)
    return ProbeResult(status, details, _ms(started))


_ASPECT_NAMES = {"entries": "paths, types and link targets", "content": "file content",
                 "owners": "owners", "modes": "modes"}
_LISTED = 5


def _printable(name: str) -> str:
    """A file name fit for one line of a report: a newline or other control character in it
    (legal in a name) is shown escaped, as ``\\n``, not printed."""
    return name if name.isprintable() else name.encode("unicode_escape", "backslashreplace").decode("ascii")


def tree_checks(expected: TreeDigest, actual: TreeDigest, where: str) -> tuple[VerifyCheck, ...]:
    """One check per aspect of the tree digest, and, when both sides have them, which entries
    directly under the folders differ (so a report names ``/srv/data/a.txt``, not only "content")."""
    differing = expected.differing_aspects(actual)
    checks = tuple(VerifyCheck(f"{_ASPECT_NAMES[name]} in {where}", "as backed up",
                               "changed" if name in differing else "as backed up", name not in differing)
                   for name in ASPECTS)
    groups = expected.differing_groups(actual)
    if groups is None:
        return checks
    listed = ", ".join(_printable(f"/{group}") for group in groups[:_LISTED])
    if len(groups) > _LISTED:
        listed += f" (and {len(groups) - _LISTED} more)"
    return checks + (VerifyCheck(f"changed entries in {where}", "none", listed or "none", not groups),)


def _state(client, container: str) -> dict:
    return dict(dockerio.inspect_container(client, container).get("State") or {})


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(fifo.CHUNK):
        yield chunk


def _lead(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A tiny first chunk, so the pipe's first write never blocks (see ``fifo.stream_to_helper``)."""
    iterator = iter(chunks)
    first = next(iterator, b"")
    yield first[:512]
    if first[512:]:
        yield first[512:]
    yield from iterator


def _stderr(target: Target, result: dockerio.ExecResult) -> str:
    return target.redact(one_line(without_marker(result.stderr).decode("utf-8", "replace")))




def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


class _Counter:
    """Counts raw bytes and tar members, and digests the members, on the way to ``out``."""

    def __init__(self, write: Callable[[bytes], object], paths: list[str]) -> None:
        self.write = write
        self.count = 0
        self.tree = TreeDigestBuilder([p.lstrip("/") for p in paths])
        self.scanner = TarScanner(self.tree.add)

    def __call__(self, chunk: bytes) -> None:
        self.scanner.feed(chunk)
        self.write(chunk)
        self.count += len(chunk)
