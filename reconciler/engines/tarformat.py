"""The tar commands of volume archives, and the note of how one was written.

Why pax: GNU tar's default (gnu) format keeps modification times in whole seconds and, with
no ``--sparse``, stores a sparse file as all its bytes: a 10 GiB file holding 1 MiB is
archived as 10 GiB of zeros and restored DENSE, which can fill the disk it fit on.
``--format=posix --sparse`` stores only the data segments (restored with their holes: GNU
tar extracts pax sparse members sparsely by itself, no option needed) and pax ``mtime``
records to the nanosecond (restored as such). ``atime`` and ``ctime`` records are dropped:
they change with every read, and an archive should change only with the data. The fixed
extended-header name keeps the archive free of tar's process id.

The helper runs the SERVICE's image, whose tar may not be GNU tar (BusyBox, bsdtar). The
script asks ``tar --version`` in the same helper (no extra container) and otherwise runs
the command every archive was made with before (the image tar's default format): the
backup still succeeds, and its note says what it could not keep. Its last stderr line
names the format and the tar (``reconcile-tar: posix tar (GNU tar) 1.34``).

Extracting needs nothing new: ``-p`` (modes), ``--numeric-owner`` (owners), and as root GNU
tar sets mtimes (nanoseconds from pax records) and recreates holes of sparse members. Only
GNU tar and bsdtar unpack GNU sparse members (another tar would make files of their raw map
and data): an archive holding any (``sparse_files``, counted by the scanner whoever wrote
them) is refused by ``VolumeEngine.restore_precheck`` before the service is stopped, and
again by the unpacking script before it wipes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.errors import RestoreError

if TYPE_CHECKING:
    from reconciler.engines.tarscan import TreeDigest

FORMAT_PAX = "posix"
FORMAT_PLAIN = "plain"  # the image tar's default format: every archive before the note existed
MARKER = "reconcile-tar: "
NO_SPARSE_TAR = 97  # exit code of a restore refused before anything was wiped
REDUCED = ("the image's tar is not GNU tar: archived in that tar's default format, as before pax, which "
           "(BusyBox's) stores sparse files as all their bytes, restored dense (holes filled with zeros), "
           "and modification times in whole seconds")

_PAX = ("tar --format=posix --sparse --pax-option=delete=atime,delete=ctime,exthdr.name=%d/PaxHeaders/%f "
        '--numeric-owner -C / -cf "$0" "$@"')
_PLAIN = 'tar --numeric-owner -C / -cf "$0" "$@"'
_VERSION = 'v=$(tar --version 2>/dev/null); v=${v%%"\n"*}'
CREATE = (f'{_VERSION}; case "$v" in *"GNU tar"*) f={FORMAT_PAX}; {_PAX};; *) f={FORMAT_PLAIN}; {_PLAIN};; esac; '
          f'rc=$?; printf \'\\n{MARKER}%s %s\\n\' "$f" "${{v:-unknown tar}}" >&2; exit $rc')
# refused: the stream is still read to its end, so the sender sees a clean exit code, not a broken pipe
_SPARSE_CAPABLE = (f'case "$(tar --version 2>/dev/null)" in *"GNU tar"*|*libarchive*) ;; *) '
                   f'echo "the image\'s tar cannot restore sparse files (GNU tar or bsdtar can)" >&2; '
                   f'cat "$0" >/dev/null; exit {NO_SPARSE_TAR};; esac')
_EXTRACT = 'exec tar --numeric-owner -C / -xpf "$0"'
VERSION_COMMAND = ["sh", "-c", "tar --version 2>/dev/null; true"]


def unpacks_sparse(version: bytes) -> bool:
    """Whether ``tar --version`` names a tar that restores GNU sparse members of pax archives."""
    return b"GNU tar" in version or b"libarchive" in version


def create_command(path: str, folders: list[str]) -> list[str]:
    """Archive ``folders`` (relative to ``/``) to ``path``; the format as the image's tar allows."""
    return ["sh", "-c", CREATE, path, *folders]


def extract_command(path: str, folders: list[str], wipe: str, sparse: bool) -> list[str]:
    """Wipe ``folders`` and unpack ``path``; with ``sparse``, first refuse (before wiping) a tar
    that cannot restore GNU sparse members: it would unpack them as files of their raw map."""
    script = f"{_SPARSE_CAPABLE}; {wipe}; {_EXTRACT}" if sparse else f"{wipe}; {_EXTRACT}"
    return ["sh", "-c", script, path, *folders]


@dataclass(frozen=True)
class ArchiveNote:
    """How an archive was written, kept in the backup's metadata (``TreeDigest.archive``)."""

    format: str
    tar: str = ""
    sparse_files: int = 0

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"format": self.format, "tar": self.tar, "sparse_files": self.sparse_files}
        if self.format != FORMAT_PAX:
            data["note"] = REDUCED
        return data

    @classmethod
    def of(cls, tree: TreeDigest | None) -> ArchiveNote:
        return cls.from_dict(tree.archive if tree is not None else None)

    @classmethod
    def from_dict(cls, data: object) -> ArchiveNote:
        """A backup from before the note: the plain format, no sparse members."""
        if not isinstance(data, dict):
            return cls(FORMAT_PLAIN)
        return cls(str(data.get("format") or FORMAT_PLAIN), str(data.get("tar") or ""),
                   int(data.get("sparse_files") or 0))


def written_with(stderr: bytes, sparse_files: int) -> ArchiveNote:
    """The note from the create script's last marker line (absent: the plain format)."""
    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        if line.startswith(MARKER):
            fmt, _, tar = line[len(MARKER):].partition(" ")
            return ArchiveNote(fmt, tar.strip(), sparse_files)
    return ArchiveNote(FORMAT_PLAIN, "", sparse_files)


def without_marker(stderr: bytes) -> bytes:
    """tar's own messages, for an error report."""
    return b"\n".join(line for line in stderr.splitlines() if line.strip() and not line.startswith(MARKER.encode()))


class RestoreRefused(RestoreError):
    """A restore refused before its folders were wiped: the service may run on them again."""


def sparse_refused(service: str, note: ArchiveNote, left: str) -> RestoreRefused:
    return RestoreRefused(f"the backup of {service} holds {note.sparse_files} sparse file(s), which only GNU tar "
                          f"or bsdtar unpack, and the tar in its image is neither", ref="restore.sparse-tar",
                          hint=f"restore with an image that has GNU tar (the one the backup was made with); {left}")
