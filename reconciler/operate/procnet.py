"""Who holds a host port: listening sockets from /proc/net/tcp{,6}, owners from /proc/*/fd.

The same walk as ``ss -ltnp``, without needing iproute2: a listening socket's inode is
matched to the ``socket:[inode]`` link in some process's fd table. Naming the owner needs
the right to read other processes' fds (root); without it the port is still reported,
with the pid unknown. Parsing is pure; ``holders`` does the reading.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from reconciler.operate.facts import PortHolder
from reconciler.operate.redact import MASK, mask_flag_values

LISTEN = "0A"
COMMAND_CHARS = 120


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    inode: int


def parse_proc_net(text: str) -> list[Listener]:
    """Listening sockets of one /proc/net/tcp or tcp6 file."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != LISTEN:
            continue
        address, _, port = parts[1].partition(":")
        out.append(Listener(decode_address(address), int(port, 16), int(parts[9])))
    return out


def decode_address(hex_address: str) -> str:
    """The kernel prints each 32-bit word of the address in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_cmdline(raw: bytes) -> str:
    """The command line, each secret flag's value masked (``--requirepass ***``): the process is not
    the spec's, so no redactor knows its password (QA: diagnose printed another server's)."""
    args = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
    return " ".join(mask_flag_values(args, MASK))[:COMMAND_CHARS]


def holders(ports: Collection[int], proc: Path = Path("/proc")) -> list[PortHolder]:
    """The processes listening on any of ``ports`` (TCP, IPv4 and IPv6), one entry per socket."""
    wanted = set(ports)
    if not wanted:
        return []
    listening = [s for name in ("tcp", "tcp6") for s in _read_listeners(proc / "net" / name)
                 if s.port in wanted]
    if not listening:
        return []
    owners = socket_owners({s.inode for s in listening}, proc)
    out = []
    for sock in listening:
        pid = owners.get(sock.inode)
        out.append(PortHolder(sock.port, sock.address, pid, _command(proc, pid) if pid else ""))
    return sorted(set(out), key=lambda h: (h.port, h.address, h.pid or 0))


def _read_listeners(path: Path) -> list[Listener]:
    try:
        return parse_proc_net(path.read_text())
    except OSError:
        return []


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, int]:
    """inode → pid for the wanted socket inodes, reading every readable fd table once."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    found: dict[int, int] = {}
    for entry in _pids(proc):
        try:
            fds = os.scandir(proc / entry / "fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    link = os.readlink(fd.path)
                except OSError:
                    continue
                if link in wanted and wanted[link] not in found:
                    found[wanted[link]] = int(entry)
        if len(found) == len(wanted):
            break
    return found


def _pids(proc: Path) -> list[str]:
    try:
        return [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []


def _command(proc: Path, pid: int) -> str:
    try:
        return parse_cmdline((proc / str(pid) / "cmdline").read_bytes()) or f"pid {pid}"
    except OSError:
        return ""
