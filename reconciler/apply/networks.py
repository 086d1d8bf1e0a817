"""A service's networks: make sure they exist, and that its container has an endpoint on each.

Shared by apply (an ``update`` after ``docker network disconnect`` by hand) and heal (a
container cut off its network, or whose network was deleted): both keep the container, and
with it its data, and give it back the endpoints it was created with.
"""

from __future__ import annotations

from reconciler import dockerio
from reconciler.apply import builders
from reconciler.session import Session
from reconciler.spec.normalise import LABEL_SERVICE, LABEL_UPSTREAM, network_name


def ensure_networks(session: Session, service: str) -> tuple[dict[str, str], list[str]]:
    """``{engine name: id}`` of the service's networks, creating the missing ones."""
    spec, client = session.spec, session.client
    present = {n["Name"]: n["Id"] for n in dockerio.project_networks(client, spec.project)}
    ids, made = {}, []
    for logical in spec.services[service].networks:
        engine = network_name(spec, logical)
        if engine not in present:
            present[engine] = dockerio.create_network(client, builders.network_args(session.loaded, logical))
            made.append(engine)
        ids[engine] = present[engine]
    return ids, made


def rejoin(session: Session, container: str, ids: dict[str, str], aliases: list[str] | None,
           start: bool = True) -> list[str]:
    """Give ``container`` an endpoint on each network of ``ids`` (and start it, with ``start``).

    An endpoint on a deleted network (the container keeps the old network's id, and cannot
    start until it is gone) is dropped first. The aliases are the ones it was created with
    (as builders gives them: the service name, and the upstream alias a proxy forwards to),
    unless ``aliases`` says otherwise.
    """
    doc = dockerio.inspect_container(session.client, container)
    labels = (doc.get("Config") or {}).get("Labels") or {}
    if aliases is None:
        aliases = [labels.get(LABEL_SERVICE, "")] + ([labels[LABEL_UPSTREAM]] if labels.get(LABEL_UPSTREAM) else [])
        aliases = [a for a in aliases if a]
    endpoints = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    joined = []
    for engine, network_id in ids.items():
        endpoint = endpoints.get(engine)
        if endpoint and endpoint.get("NetworkID") == network_id:
            continue
        if endpoint is not None:
            dockerio.disconnect_network(session.client, engine, doc["Id"])
        dockerio.connect_network(session.client, engine, doc["Id"], aliases=aliases)
        joined.append(f"{container} to {engine}")
    if start and not (doc.get("State") or {}).get("Running"):
        dockerio.start(session.client, doc["Id"])
    return joined
