"""The one module that imports the Docker SDK.

Everything else talks to the engine through these small functions, so errors from the SDK
are translated once into ``EngineError`` with a hint, and tests of the pure core never need
an engine.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

import docker
from docker.errors import APIError, DockerException, NotFound

from reconciler.errors import EngineError


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def shown_address() -> str:
    """``engine_address`` fit to print: a password in a ``tcp://user:pw@host`` reads ``***``."""
    from reconciler.operate.redact import MASK, url_passwords

    address = engine_address()
    for password in url_passwords(address):
        address = address.replace(password, MASK)
    return address


def connect(timeout: float = 30.0) -> docker.DockerClient:
    """A client that has answered a ping, or an ``EngineError`` saying how to get one."""
    try:
        client = docker.DockerClient(base_url=engine_address(), timeout=timeout)
        client.api.ping()
        return client
    except DockerException as exc:
        if "PermissionError" in str(exc) or "Permission denied" in str(exc):
            # the engine runs, this user may not use its socket (a CI runner not in the docker group):
            # "start it" would send them the wrong way. Same ref: callers treat both as no engine.
            raise EngineError(
                f"cannot reach the Docker engine at {shown_address()}: permission denied on its socket",
                ref="engine.unreachable",
                hint="run reconcile as a user in the docker group (sudo usermod -aG docker USER, then log in "
                     "again or restart the CI runner's service), or as root") from None
        raise EngineError(
            f"cannot reach the Docker engine at {shown_address()}",
            ref="engine.unreachable",
            hint="start it (sudo systemctl start docker, or bash lab/engine.sh), or set DOCKER_HOST; "
                 f"underlying error: {type(exc).__name__}",
        ) from None


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Turn SDK exceptions raised while doing ``what`` into an ``EngineError``."""
    try:
        yield
    except NotFound as exc:
        raise EngineError(f"{what}: not found ({_explain(exc)})", ref="engine.not-found",
                          hint="the engine changed under us; run plan again") from None
    except APIError as exc:
        raise EngineError(f"{what}: the engine refused ({_explain(exc)})", ref="engine.api",
                          hint=_refused_hint(_explain(exc))) from None
    except DockerException as exc:
        raise EngineError(f"{what}: {type(exc).__name__}", ref="engine.unreachable",
                          hint="is the Docker engine running? (bash lab/engine.sh)") from None


_PORT_TAKEN = re.compile(r":(\d+): bind: address already in use|Bind for \S*:(\d+) failed: port is already allocated")


def _refused_hint(explanation: str) -> str:
    """What to do: for a host port another process or container holds (a start that publishes
    it), which port and how to find its holder, not "``docker info``" (QA)."""
    taken = _PORT_TAKEN.search(explanation)
    if taken is None:
        return "see the engine's message above; `docker info` shows its state"
    port = taken[1] or taken[2]
    return (f"host port {port} is taken by another process or container: find it (ss -ltnp 'sport = :{port}', "
            f"docker ps --filter publish={port}), stop it, or publish the service on another host port in the spec")


def _explain(exc: APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc.status_code or type(exc).__name__)


def engine_version(client: docker.DockerClient) -> str:
    with engine_errors("reading the engine version"):
        return str(client.api.version().get("Version", ""))


def project_snapshot(client: docker.DockerClient, project: str, image_refs) -> dict:
    """The engine's documents for one project: what ``observe.collect.from_raw`` types.

    Plain JSON-shaped data, so that it can also be read in another process (observe/prefetch).
    """
    return {"images": inspect_images(client, sorted(set(image_refs))),
            "containers": project_containers(client, project),
            "name_holders": name_holders(client, project),
            "networks": project_networks(client, project) + networks_named_like(client, project),
            "volumes": project_volumes(client, project),
            "engine_id": engine_id(client)}


def engine_id(client: docker.DockerClient) -> str:
    """The engine's own random ID (``docker info``), which no plan shows: the key of a plan's
    spec hash (``plan.planner``), so that a plan posted in a pull request cannot be used to
    guess a weak secret of the spec offline."""
    with engine_errors("reading the engine's ID"):
        return str(client.api.info().get("ID") or "")


def name_holders(client: docker.DockerClient, project: str) -> list[dict]:
    """Containers that are not ``project``'s (no reconcile labels, or another project's) under a
    name of the project's form, ``<project>-…``: one may hold a name apply would create a
    container under, which the plan must say before apply fails on the engine's Conflict.

    One list call, filtered by the engine (no inspect): the fields the plan names them by.
    """
    with engine_errors("listing containers"):
        listed = client.api.containers(all=True, filters={"name": f"^/{re.escape(project)}-"})
    return [{"Id": doc["Id"], "Names": list(doc.get("Names") or ()), "Image": doc.get("Image", ""),
             "State": doc.get("State", ""), "Project": (doc.get("Labels") or {}).get("reconcile.project")}
            for doc in listed if (doc.get("Labels") or {}).get("reconcile.project") != project]


def foreign_holder(client: docker.DockerClient, name: str, project: str) -> str:
    """A container named ``name`` that is not ``project``'s (``docker run --name`` without
    reconcile's labels), as ``<short id> (<image>, <state>)``; '' when there is none."""
    with engine_errors("listing containers"):
        listed = client.api.containers(all=True, filters={"name": f"^/{re.escape(name)}$"})
    for doc in listed:
        if f"/{name}" in (doc.get("Names") or ()) and (doc.get("Labels") or {}).get("reconcile.project") != project:
            return f"{doc['Id'][:12]} ({doc.get('Image', '?')}, {doc.get('State', '?')})"
    return ""


def project_containers(client: docker.DockerClient, project: str) -> list[dict]:
    """Full inspect documents of every container labelled with ``project``.

    One after the other: over the local socket an inspect takes about a millisecond, less
    than a thread pool costs to start (measured on 50 containers: 41 ms in turn, 50 in threads).
    """
    with engine_errors("listing containers"):
        listed = client.api.containers(all=True, filters={"label": f"reconcile.project={project}"})
    found = (_unless_missing(f"inspecting container {c['Id'][:12]}", client.api.inspect_container, c["Id"])
             for c in listed)  # a container removed between list and inspect is skipped
    return [doc for doc in found if doc is not None]


def _unless_missing(what: str, inspect, name: str) -> dict | None:
    """``inspect(name)``, or None when the engine has no such object."""
    try:
        with engine_errors(what):
            return inspect(name)
    except EngineError as exc:
        if exc.ref == "engine.not-found":
            return None
        raise


def project_networks(client: docker.DockerClient, project: str) -> list[dict]:
    with engine_errors("listing networks"):
        return client.api.networks(filters={"label": f"reconcile.project={project}"})


def networks_named_like(client: docker.DockerClient, project: str) -> list[dict]:
    """Networks not labelled with ``project`` under a name of its form, ``<project>_…``: one may
    hold the name of a network apply would create, which the plan must say before the engine
    refuses the create halfway through an apply. The engine's name filter matches anywhere in
    the name, so the prefix is checked here."""
    with engine_errors("listing networks"):
        listed = client.api.networks(filters={"name": f"{project}_"})
    return [doc for doc in listed if str(doc.get("Name") or "").startswith(f"{project}_")
            and (doc.get("Labels") or {}).get("reconcile.project") != project]


def project_volumes(client: docker.DockerClient, project: str) -> list[dict]:
    with engine_errors("listing volumes"):
        answer = client.api.volumes(filters={"label": f"reconcile.project={project}"})
    return list(answer.get("Volumes") or [])


def inspect_images(client: docker.DockerClient, refs: list[str]) -> dict[str, dict | None]:
    """Inspect each image reference; ``None`` for those not present locally."""
    return {ref: _unless_missing(f"inspecting image {ref}", client.api.inspect_image, ref) for ref in refs}


def create_network(client: docker.DockerClient, args: dict) -> str:
    with engine_errors(f"creating network {args['name']}"):
        return client.api.create_network(check_duplicate=True, **args)["Id"]


def create_volume(client: docker.DockerClient, args: dict) -> str:
    with engine_errors(f"creating volume {args['name']}"):
        return client.api.create_volume(**args)["Name"]


def create_container(client: docker.DockerClient, args: dict) -> str:
    """Create a container from ``builders.container_args``, joined to all its networks."""
    args = dict(args)
    networks, aliases = args.pop("networks"), args.pop("aliases")
    api = client.api
    with engine_errors(f"creating container {args['name']}"):
        host_config = api.create_host_config(**{k: v for k, v in args.pop("host_config").items()
                                                if v is not None})
        networking = None
        if networks:
            networking = api.create_networking_config(
                {networks[0]: api.create_endpoint_config(aliases=aliases)})
        created = api.create_container(host_config=host_config, networking_config=networking, **args)
        for network in networks[1:]:
            api.connect_container_to_network(created["Id"], network, aliases=aliases)
    return created["Id"]


def connect_network(client: docker.DockerClient, network: str, container: str,
                    aliases: list[str]) -> None:
    with engine_errors(f"connecting container {container[:24]} to network {network}"):
        client.api.connect_container_to_network(container, network, aliases=aliases)


def disconnect_network(client: docker.DockerClient, network: str, container: str) -> None:
    """Forced: the way to drop a container's endpoint on a network that was deleted (the
    container keeps the old network's id and cannot start until that endpoint is gone)."""
    with engine_errors(f"disconnecting container {container[:24]} from network {network}"):
        client.api.disconnect_container_from_network(container, network, force=True)


def start(client: docker.DockerClient, container: str) -> None:
    with engine_errors(f"starting container {container[:24]}"):
        client.api.start(container)


def unpause(client: docker.DockerClient, container: str) -> None:
    with engine_errors(f"unpausing container {container[:24]}"):
        client.api.unpause(container)


def stop(client: docker.DockerClient, container: str, timeout: float = 30) -> None:
    with engine_errors(f"stopping container {container[:24]}"):
        client.api.stop(container, timeout=int(timeout))


def remove_container(client: docker.DockerClient, container: str) -> None:
    """Remove a container and its anonymous volumes (an image's ``VOLUME`` that no spec
    volume covers: nothing else would ever use or delete them). Named volumes and bind
    mounts are never touched: Docker's ``-v`` leaves them alone."""
    with engine_errors(f"removing container {container[:24]}"):
        client.api.remove_container(container, force=True, v=True)


def set_restart_policy(client: docker.DockerClient, container: str, policy: str) -> None:
    """Change a container's restart policy in place: a kept old version gets ``no``, so an
    engine restart cannot bring it back to life next to the live one."""
    with engine_errors(f"updating the restart policy of {container[:24]}"):
        client.api.update_container(container, restart_policy={"Name": policy})


def update_container(client: docker.DockerClient, container: str, *, restart: str | None = None,
                     memory: int | None = None) -> None:
    """``docker update``: a new restart policy and/or memory limit (bytes), in place.

    Swap goes with the memory limit, at twice it, as the engine sets it for a container
    created with only a limit: the engine refuses a limit above the current swap limit, and
    a container made with no limit has a swap limit of 0.
    """
    changes: dict = {}
    if restart is not None:
        changes["restart_policy"] = {"Name": restart}
    if memory is not None:
        changes.update(mem_limit=memory, memswap_limit=2 * memory)
    if not changes:
        return
    with engine_errors(f"updating container {container[:24]} in place"):
        client.api.update_container(container, **changes)


def rename(client: docker.DockerClient, container: str, name: str) -> None:
    with engine_errors(f"renaming container {container[:24]} to {name}"):
        client.api.rename(container, name)


def inspect_container(client: docker.DockerClient, container: str) -> dict:
    with engine_errors(f"inspecting container {container[:24]}"):
        return client.api.inspect_container(container)


def read_file(client: docker.DockerClient, container: str, path: str, limit: int = 64 * 1024) -> bytes:
    """A small regular file from inside a container (a Docker secret, a password file),
    read through the engine as ``docker cp`` does: mounts included, no process started."""
    what = f"reading {path} in container {container[:24]}"
    with engine_errors(what):
        try:
            stream, stat = client.api.get_archive(container, path)
        except NotFound:
            raise EngineError(f"{what}: there is no such file", ref="engine.file",
                              hint="mount the file into the container, or fix the *_FILE variable "
                                   "that names it") from None
        except APIError as exc:  # e.g. the host file of a bind mount was deleted
            raise EngineError(f"{what}: the engine refused ({_explain(exc)})", ref="engine.file",
                              hint="check that the file mounted there still exists on the host") from None
        if stat.get("size", 0) > limit:
            raise EngineError(f"{what}: it is {stat['size']} bytes, more than a secret file holds",
                              ref="engine.file", hint=f"point the *_FILE variable at a file under {limit} bytes")
        data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member is not None and member.isfile() else None
        if handle is None:
            raise EngineError(f"{what}: not a regular file", ref="engine.file",
                              hint="point the *_FILE variable at the file itself")
        return handle.read()


def logs(client: docker.DockerClient, container: str, lines: int = 30) -> str:
    """The last ``lines`` a container printed, without the terminal codes in them (printed raw
    they would colour, move or clear the terminal that shows them)."""
    from reconciler.operate.logscan import readable_logs

    with engine_errors(f"reading logs of {container[:24]}"):
        return readable_logs(client.api.logs(container, tail=lines).decode("utf-8", "replace"))


def engine_info(client: docker.DockerClient) -> dict:
    """``docker info``: the engine's root folder, cgroup version, CPUs and memory."""
    with engine_errors("reading the engine's info"):
        return dict(client.api.info())


def container_stats(client: docker.DockerClient, container: str) -> dict:
    """One sample of a container's CPU and memory counters, without the engine's 1 s wait
    (``one_shot``): callers that want a CPU percentage take two samples themselves."""
    with engine_errors(f"reading resource use of {container[:24]}"):
        return dict(client.api.stats(container, stream=False, one_shot=True))


def restart(client: docker.DockerClient, container: str, timeout: float = 30) -> None:
    with engine_errors(f"restarting container {container[:24]}"):
        client.api.restart(container, timeout=int(timeout))


def image_id(client: docker.DockerClient, ref: str) -> str:
    """The local image id of ``ref`` (an ``EngineError`` ``engine.not-found`` when absent)."""
    with engine_errors(f"inspecting image {ref}"):
        return str(client.api.inspect_image(ref)["Id"])


def pull(client: docker.DockerClient, ref: str) -> None:
    with engine_errors(f"pulling image {ref}"):
        repository, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        client.api.pull(repository, tag=tag or "latest")


def remove_volume(client: docker.DockerClient, name: str) -> None:
    with engine_errors(f"removing volume {name}"):
        client.api.remove_volume(name, force=True)


def remove_network(client: docker.DockerClient, name: str) -> None:
    with engine_errors(f"removing network {name}"):
        client.api.remove_network(name)


from reconciler.dockerio.stream import (  # noqa: E402  (needs engine_errors above)
    ExecResult,
    StreamAborted,
    exec_stream,
    local_engine,
    prune_stale_helpers,
    remove_helper,
    run_helper,
    start_helper,
    wait_helper,
)

__all__ = ["ExecResult", "StreamAborted", "exec_stream", "local_engine",
           "prune_stale_helpers", "remove_helper", "run_helper", "start_helper", "wait_helper"]
