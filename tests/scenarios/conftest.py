"""Fixtures of the end-to-end scenarios: a Docker client and one lab stack per module.

A stack is made once per module (``make_stack``) and each test of the module drives it from
the state the previous test left (tests run in file order): making a full stack costs ~15 s
on two cores, and the scenarios are steps of one stack's life anyway. Everything labelled
with the stack's project is removed at the end of the module.
"""

from __future__ import annotations

import secrets

import pytest

from reconciler import dockerio
from tests.scenarios.scenario_support import Stack


@pytest.fixture(scope="session")
def client():
    try:
        return dockerio.connect(timeout=60)
    except Exception as exc:  # noqa: BLE001 - the message is the point
        pytest.fail(f"no Docker engine: {exc}. Start the lab first: bash lab/up.sh", pytrace=False)


@pytest.fixture(scope="module")
def make_stack(client, tmp_path_factory):
    """``make_stack(*apply_args)``: a new project applied from scratch and seeded
    (2000 users and appointments, 300 Redis keys)."""
    made: list[Stack] = []

    def make(*args: str) -> Stack:
        stack = Stack(client, f"sc-{secrets.token_hex(3)}", tmp_path_factory.mktemp("stack"))
        made.append(stack)
        first = stack.apply(*args)
        assert first.code == 0, str(first)
        stack.seed()
        return stack

    yield make
    for stack in made:
        stack.purge()
