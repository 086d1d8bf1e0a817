"""The engine side of a blue-green service's proxy: make it exist, and move its traffic.

``point`` is the one entry: after it returns, ``<project>-<service>-proxy`` runs the spec's
proxy config and its nginx workers send every new request to the given container. How:

* missing, or its container config (image, ports, networks, config folder) changed →
  (remove it and) create it with the new upstream already in its config, then start it;
* stopped → write the config, start it;
* running → switch: write the new config atomically (temp file + rename in the bind-mounted
  folder) → ``nginx -t`` (the old file is put back if it fails: nginx keeps serving the old
  config, and the next plan still reads the truth) → ``nginx -s reload`` (graceful: old
  workers finish their in-flight requests while new workers take new ones).

In every case it then polls the proxy's control server until it answers with the new
upstream's id: only then is the switch real, and only then may the old container drain.
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path

from reconciler import dockerio
from reconciler.apply.context import ApplyRun
from reconciler.deploy import nginx, rules
from reconciler.engines.base import container_ip
from reconciler.errors import ApplyError, EngineError
from reconciler.spec.normalise import LABEL_SPEC_HASH, LABEL_UPSTREAM

CONFIRM_TIMEOUT = 15.0
POLL = 0.1


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
        run.step(action_id, f"remove proxy {_name(doc)}: its config changed", container=doc["Id"])
        dockerio.remove_container(run.session.client, doc["Id"])
        doc = None
    if doc is not None and (doc.get("State") or {}).get("Running"):
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


def config_text(run: ApplyRun, service: str, upstream: nginx.Upstream) -> str:
    declared = run.session.spec.services[service]
    return nginx.render(run.session.spec.project, service, [p.container for p in declared.ports], upstream)


def create(run: ApplyRun, action_id: str, service: str) -> str:
    session = run.session
    if not dockerio.local_engine():
        raise ApplyError("the blue-green proxy reads its config from a folder on this host, and the "
                         "Docker engine is remote", ref="apply.proxy-remote",
                         hint="run reconcile on the engine's host, or use deploy.strategy: recreate")
    ref = session.spec.services[service].deploy.proxy_image
    image = _image(run, action_id, ref)
    args = rules.proxy_args(session.loaded, service, image)
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
        if doc is None or not state.get("Running"):
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


def _labels(doc: dict) -> dict:
    return (doc.get("Config") or {}).get("Labels") or {}


def _name(doc: dict) -> str:
    return doc.get("Name", "").lstrip("/")
