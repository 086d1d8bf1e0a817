"""The engine side of a blue-green service's proxy: make it exist, and move its traffic.

``point`` is the one entry: after it returns, ``<project>-<service>-proxy`` runs the spec's
proxy config and its nginx workers send every new request to the given container. How:

* missing → create it with the new upstream already in its config, then start it;
* running, but its container config (image, ports, networks, config folder) changed →
  ``replace``: the old proxy serves until a new one serves. When they share no host port
  the new one is made and started beside it under a temporary name (``-proxy-new-<t>``),
  confirmed, and only then is the old one removed and the new one renamed. When they share
  one, the old one must stop first (a short gap); if the new one does not serve, it is
  removed and the old one started again. Either way a failure leaves the old proxy serving,
  its config file as it was, and says so (a host port another process holds is named);
* stopped → write the config, start it;
* running → switch: write the new config atomically (temp file + rename in the bind-mounted
  folder) → ``nginx -t`` (the old file is put back if it fails: nginx keeps serving the old
  config, and the next plan still reads the truth) → ``nginx -s reload`` (graceful: old
  workers finish their in-flight requests while new workers take new ones).

In every case it then polls the proxy's control server until it answers with the new
upstream's id: only then is the switch real, and only then may the old container drain.

``point_back`` is the undo's half: whatever the failure, it moves the proxy that runs now
back to the old container (never recreating it: that may be what just failed) and confirms.
"""

from __future__ import annotations

import http.client
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler import dockerio
from reconciler.apply.context import ApplyRun
from reconciler.apply.signals import finishing
from reconciler.deploy import nginx, rules
from reconciler.engines.base import container_ip
from reconciler.errors import ApplyError, CriticalError, EngineError, ReconcileError
from reconciler.spec.models import Port
from reconciler.spec.normalise import (
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_UPSTREAM,
)

CONFIRM_TIMEOUT = 15.0
POLL = 0.1
STOP_GRACE = 10.0  # nginx stops gracefully (SIGQUIT): in-flight requests finish first
REPLACING_MARK = "new"
_PORT_TAKEN = ("address already in use", "port is already allocated")


def upstream_of(doc: dict) -> nginx.Upstream:
    """The alias a container is reached by; its short id when it carries no alias label
    (the engine's DNS answers for a container's short id on user-defined networks)."""
    labels = (doc.get("Config") or {}).get("Labels") or {}
    return nginx.Upstream(doc["Id"], labels.get(LABEL_UPSTREAM) or doc["Id"][:12])


def point(run: ApplyRun, action_id: str, service: str, target: dict, *,
          before_start: Callable[[], None] | None = None) -> dict:
    """Make the proxy serve ``target`` (an inspect document); ``before_start`` runs right
    before a new or stopped proxy starts (to free host ports an old container still holds)."""
    upstream = upstream_of(target)
    text = config_text(run, service, upstream)
    doc = _inspect(run, rules.proxy_container_name(run.session.loaded, service))
    if doc is not None and _labels(doc).get(LABEL_SPEC_HASH) != rules.proxy_hash(run.session.loaded, service):
        if _running(doc):
            replace(run, action_id, service, doc, text, upstream, before_start)
            return {"proxy": _name(doc), "upstream": upstream.alias}
        run.step(action_id, f"remove proxy {_name(doc)}: its config changed (it does not run)",
                 container=doc["Id"])
        dockerio.remove_container(run.session.client, doc["Id"])
        doc = None
    if doc is not None and _running(doc):
        if switch(run, action_id, service, doc, text, upstream):
            return {"proxy": _name(doc), "upstream": upstream.alias}
        run.step(action_id, f"remove proxy {_name(doc)}: it does not see its config folder "
                 "(the folder was deleted or replaced)", container=doc["Id"])
        dockerio.remove_container(run.session.client, doc["Id"])
        doc = None
    folder = rules.config_folder(run.session.loaded, service)
    write_config(folder, text)
    proxy_id = doc["Id"] if doc is not None else create(run, action_id, service)
    if before_start is not None:
        before_start()
    _start(run, action_id, service, proxy_id, created=doc is None)
    confirm(run, action_id, proxy_id, upstream)
    return {"proxy": rules.proxy_container_name(run.session.loaded, service), "upstream": upstream.alias}


def point_back(run: ApplyRun, action_id: str, service: str, target: dict) -> dict:
    """Undo: the proxy that runs now serves ``target`` again, confirmed. Switched in place
    with the ports it publishes, whatever its config label says: a deploy can fail because
    a new proxy could not run, and recreating it here would fail the same way."""
    doc = _inspect(run, rules.proxy_container_name(run.session.loaded, service))
    if doc is not None and _running(doc):
        upstream = upstream_of(target)
        text = nginx.render(run.session.spec.project, service, published_ports(doc), upstream)
        if switch(run, action_id, service, doc, text, upstream):
            return {"proxy": _name(doc), "upstream": upstream.alias}
    return point(run, action_id, service, target)


def config_text(run: ApplyRun, service: str, upstream: nginx.Upstream) -> str:
    declared = run.session.spec.services[service]
    return nginx.render(run.session.spec.project, service, [p.container for p in declared.ports], upstream)


def create(run: ApplyRun, action_id: str, service: str, name: str | None = None) -> str:
    session = run.session
    if not dockerio.local_engine():
        raise ApplyError("the blue-green proxy reads its config from a folder on this host, and the "
                         "Docker engine is remote", ref="apply.proxy-remote",
                         hint="run reconcile on the engine's host, or use deploy.strategy: recreate")
    ref = session.spec.services[service].deploy.proxy_image
    image = _image(run, action_id, ref)
    args = rules.proxy_args(session.loaded, service, image)
    args["name"] = name or args["name"]
    run.step(action_id, f"create proxy {args['name']} ({ref})")
    return dockerio.create_container(session.client, args)


def _start(run: ApplyRun, action_id: str, service: str, proxy_id: str, created: bool) -> None:
    """Start it; a proxy made here that cannot start is removed, so nothing half-made stays."""
    run.step(action_id, f"start proxy {rules.proxy_container_name(run.session.loaded, service)}",
             container=proxy_id)
    try:
        dockerio.start(run.session.client, proxy_id)
    except EngineError:
        if created:
            dockerio.remove_container(run.session.client, proxy_id)
        raise


def switch(run: ApplyRun, action_id: str, service: str, doc: dict, text: str,
           upstream: nginx.Upstream) -> bool:
    """Write → test → reload a running proxy; the old config comes back if nginx refuses.

    False (nothing reloaded) when the proxy does not see the file just written: its bind
    mount still holds a folder that was deleted (a removed state dir), and only a new
    container mounts the new one.
    """
    path = rules.config_folder(run.session.loaded, service) / nginx.CONF_FILE
    before = path.read_text(encoding="utf-8") if path.exists() else None
    run.step(action_id, f"switch {_name(doc)} to {upstream.alias} (nginx -t, then reload)",
             container=doc["Id"])
    write_config(path.parent, text)
    seen = dockerio.exec_stream(run.session.client, doc["Id"],
                                ["grep", "-qF", upstream.container_id, f"{nginx.CONF_DIR}/{nginx.CONF_FILE}"])
    if seen.exit_code != 0:
        return False
    try:
        _nginx(run, doc["Id"], ["nginx", "-t", "-q"], "rejected the new config (nginx -t)")
        _nginx(run, doc["Id"], ["nginx", "-s", "reload"], "could not reload")
    except ApplyError:
        if before is not None:
            write_config(path.parent, before)
        raise
    confirm(run, action_id, doc["Id"], upstream)
    return True


def _nginx(run: ApplyRun, proxy_id: str, command: list[str], failed: str) -> None:
    result = dockerio.exec_stream(run.session.client, proxy_id, command)
    if result.exit_code != 0:
        said = result.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise ApplyError(f"the proxy {failed}: {' / '.join(said) or f'exit {result.exit_code}'}",
                         ref="apply.proxy", hint="traffic stays where it was; see the proxy's logs")


def confirm(run: ApplyRun, action_id: str, proxy_id: str, upstream: nginx.Upstream,
            timeout: float = CONFIRM_TIMEOUT) -> None:
    """Wait until the proxy's workers answer with ``upstream``: the config is live."""
    run.step(action_id, f"wait until the proxy serves {upstream.alias}")
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while True:
        doc = _inspect(run, proxy_id)
        state = (doc or {}).get("State") or {}
        if doc is None or not state.get("Running") or state.get("Restarting"):
            raise ApplyError(f"the proxy stopped (exit code {state.get('ExitCode')})", ref="apply.proxy",
                             hint=f"its last log lines: docker logs {proxy_id[:12]}")
        seen = _ask(container_ip(doc)) or seen
        if seen == upstream.short_id:
            return
        if time.monotonic() >= deadline:
            raise ApplyError(f"the proxy does not serve {upstream.alias} after {timeout:g}s "
                             f"(its control server says: {seen})", ref="apply.proxy",
                             hint=f"see docker logs {proxy_id[:12]}")
        time.sleep(POLL)


def _ask(ip: str) -> str | None:
    if not ip:
        return None
    conn = http.client.HTTPConnection(ip, nginx.CONTROL_PORT, timeout=2)
    try:
        conn.request("GET", nginx.CONTROL_PATH)
        response = conn.getresponse()
        return response.read(200).decode("ascii", "replace").strip() if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# -- replacing a running proxy whose container config changed -------------------------------

@dataclass
class _Replacement:
    """A proxy replacement in flight: what putting the old one back needs."""

    old: dict
    folder: Path
    before: str | None  # the config file the old proxy serves, put back on failure
    name: str
    beside: bool
    new_id: str | None = None
    old_stopped: bool = False


def replace(run: ApplyRun, action_id: str, service: str, old: dict, text: str, upstream: nginx.Upstream,
            before_start: Callable[[], None] | None = None) -> None:
    """A new proxy for a running one whose container config changed (see the module notes)."""
    loaded = run.session.loaded
    folder = rules.config_folder(loaded, service)
    conf = folder / nginx.CONF_FILE
    swap = _Replacement(old, folder, conf.read_text(encoding="utf-8") if conf.exists() else None,
                        f"{rules.proxy_container_name(loaded, service)}-{REPLACING_MARK}-{secrets.token_hex(3)}",
                        beside=not shared_host_ports(old, run.session.spec.services[service].ports))
    _remove_strays(run, action_id, service)
    run.step(action_id, f"replace proxy {_name(old)}: its config changed; " + (
        "the new one starts beside it (no host port in common), the old one serves until then" if swap.beside
        else "it shares host ports with the new one, so it stops first (a short gap)"), container=old["Id"])
    try:
        _open(run, action_id, service, swap, text, upstream, before_start)
    except (Exception, KeyboardInterrupt) as exc:  # the old proxy comes back, whatever stopped the new one
        with finishing("putting the old proxy back"):
            _put_back(run, action_id, swap, exc)
        if isinstance(exc, ReconcileError):
            raise _failed(run, service, swap, exc) from None
        raise
    with finishing("the proxy replacement"):
        run.step(action_id, f"remove proxy {_name(old)}: {swap.name} serves", container=old["Id"])
        dockerio.remove_container(run.session.client, old["Id"])
        run.step(action_id, f"rename {swap.name} → {_name(old)}", container=swap.new_id)
        dockerio.rename(run.session.client, swap.new_id, _name(old))


def _open(run: ApplyRun, action_id: str, service: str, swap: _Replacement, text: str,
          upstream: nginx.Upstream, before_start: Callable[[], None] | None) -> None:
    """Create → (stop the old one when they share ports) → start → confirm the new proxy."""
    client = run.session.client
    write_config(swap.folder, text)  # the running old proxy reads it only at a reload or start
    swap.new_id = create(run, action_id, service, name=swap.name)
    if before_start is not None:
        before_start()
    if not swap.beside:
        run.step(action_id, f"stop proxy {_name(swap.old)} (it holds the host ports)", container=swap.old["Id"])
        swap.old_stopped = True
        dockerio.stop(client, swap.old["Id"], STOP_GRACE)
    run.step(action_id, f"start proxy {swap.name}", container=swap.new_id)
    dockerio.start(client, swap.new_id)
    confirm(run, action_id, swap.new_id, upstream)


def _put_back(run: ApplyRun, action_id: str, swap: _Replacement, error: BaseException) -> None:
    """The new proxy goes, the old config file comes back, a stopped old proxy starts again
    and must serve what it served; ``CriticalError`` when that fails too."""
    client, old = run.session.client, swap.old
    try:
        if swap.new_id is not None:
            run.step(action_id, f"undo: remove proxy {swap.name}", container=swap.new_id)
            dockerio.remove_container(client, swap.new_id)
        if swap.before is not None:
            write_config(swap.folder, swap.before)
        if swap.old_stopped:
            run.step(action_id, f"undo: start proxy {_name(old)} again", container=old["Id"])
            dockerio.start(client, old["Id"])
            served = nginx.parse_upstream(swap.before or "")
            if served is not None:
                confirm(run, action_id, old["Id"], served)
    except (ReconcileError, OSError) as exc:
        said = getattr(error, "message", None) or type(error).__name__
        raise CriticalError(f"the new proxy {swap.name} did not serve ({said}), and putting the old "
                            f"proxy back failed too ({getattr(exc, 'message', None) or exc})",
                            ref="apply.proxy-put-back",
                            hint=f"recover by hand: docker rm -f {swap.name}; docker start {_name(old)}; "
                                 "then run apply again") from None


def _failed(run: ApplyRun, service: str, swap: _Replacement, error: ReconcileError) -> ApplyError:
    old_ports = ", ".join(bound_host_ports(swap.old)) or "no host port"
    serves = (f"the old proxy still serves ({_name(swap.old)}, on {old_ports})" if swap.beside
              else f"the old proxy serves again ({_name(swap.old)}, on {old_ports})")
    if any(words in error.message for words in _PORT_TAKEN):
        wanted = [p for p in run.session.spec.services[service].ports if p.host]
        ports = ", ".join(_shown(p.host_ip, p.host) for p in wanted)
        return ApplyError(f"the proxy cannot move to host port {ports}: it is already in use by another "
                          f"process; {serves}", ref="apply.proxy-port",
                          hint="free that port or choose another in the service's ports:, then run apply again "
                               f"(the engine said: {error.message})")
    return ApplyError(f"the new proxy did not serve: {error.message}; {serves}", ref="apply.proxy",
                      hint="the new proxy was removed; fix what the error says, then run apply again")


def _remove_strays(run: ApplyRun, action_id: str, service: str) -> None:
    """New proxies a killed replacement left (none after Ctrl-C: that is undone)."""
    prefix = f"{rules.proxy_container_name(run.session.loaded, service)}-{REPLACING_MARK}-"
    for doc in dockerio.project_containers(run.session.client, run.session.spec.project):
        labels = _labels(doc)
        if labels.get(LABEL_SERVICE) == service and labels.get(LABEL_ROLE) == "proxy" \
                and _name(doc).startswith(prefix):
            run.step(action_id, f"remove proxy {_name(doc)} (left by an interrupted apply)", container=doc["Id"])
            dockerio.remove_container(run.session.client, doc["Id"])


def shared_host_ports(doc: dict, ports: Iterable[Port]) -> bool:
    """Whether a container (an inspect document) binds a host port the ``ports`` would bind
    too (by number and protocol, whatever the address: 0.0.0.0 includes 127.0.0.1)."""
    held = {(key.rpartition("/")[2] or "tcp", int(b["HostPort"]))
            for key, binds in _bindings(doc).items() for b in binds or () if (b or {}).get("HostPort")}
    return any((p.protocol, p.host) in held for p in ports if p.host)


def bound_host_ports(doc: dict) -> list[str]:
    return [_shown(b.get("HostIp"), b["HostPort"]) for binds in _bindings(doc).values()
            for b in binds or () if (b or {}).get("HostPort")]


def published_ports(doc: dict) -> list[int]:
    """The TCP container ports a proxy publishes (what its config must listen on)."""
    return sorted(int(key.split("/")[0]) for key in _bindings(doc) if key.endswith("/tcp"))


def _bindings(doc: dict) -> dict:
    return (doc.get("HostConfig") or {}).get("PortBindings") or {}


def _shown(ip: str | None, port: object) -> str:
    return f"{ip or '0.0.0.0'}:{port}"


def remove(run: ApplyRun, action_id: str, service: str) -> None:
    """Remove the proxy if it exists (undoing a first blue-green deploy)."""
    doc = _inspect(run, rules.proxy_container_name(run.session.loaded, service))
    if doc is not None:
        run.step(action_id, f"remove proxy {_name(doc)}", container=doc["Id"])
        dockerio.remove_container(run.session.client, doc["Id"])


def write_config(folder: Path, text: str) -> None:
    """Atomically: nginx (at reload or start) reads either the whole old or the whole new file."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    temp = folder / f".{nginx.CONF_FILE}.tmp"
    with open(temp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temp, 0o644)
    os.replace(temp, folder / nginx.CONF_FILE)


def _image(run: ApplyRun, action_id: str, ref: str) -> str:
    client = run.session.client
    try:
        return dockerio.image_id(client, ref)
    except EngineError as exc:
        if exc.ref != "engine.not-found":
            raise
    run.step(action_id, f"pull {ref}")
    dockerio.pull(client, ref)
    return dockerio.image_id(client, ref)


def _inspect(run: ApplyRun, container: str) -> dict | None:
    try:
        return dockerio.inspect_container(run.session.client, container)
    except EngineError as exc:
        if exc.ref == "engine.not-found":
            return None
        raise


def _running(doc: dict) -> bool:
    return bool((doc.get("State") or {}).get("Running"))


def _labels(doc: dict) -> dict:
    return (doc.get("Config") or {}).get("Labels") or {}


def _name(doc: dict) -> str:
    return doc.get("Name", "").lstrip("/")
