"""Shared pieces of the contract harnesses: polling describe for providers that take real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from autoscaler.core.model import GroupState
from autoscaler.ports.provider import AccountClient, GroupId
from autoscaler.testing.conformance import ConformanceError, describe_one


async def poll(
    client: AccountClient, group: GroupId, ok: Callable[[GroupState], bool], what: str,
    deadline_s: float,
) -> GroupState:
    """Describe until ``ok`` holds; a generous deadline bounds a broken provider, it is not an
    assertion about speed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        state = await describe_one(client, group)
        if ok(state):
            return state
        if loop.time() > end:
            raise ConformanceError(f"gave up waiting for {what}; last seen: {state}")
        await asyncio.sleep(0.02)
