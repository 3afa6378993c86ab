"""Alert webhooks: a JSON POST in a background task, with a timeout and retries with backoff.

Never on the tick's path: ``send`` schedules the delivery and returns. The POST runs on the
standard library's ``urllib`` in a worker thread (no extra dependency for one request a
month); each attempt is bounded by ``timeout``; a failure (no answer, a non-2xx status) is
retried ``retries`` times after ``backoff * 2**attempt`` seconds (plus up to 25 % jitter).

What is not guaranteed: delivery. A daemon stopped while a delivery is being retried gives it
``close``'s grace and then drops it (logged ``webhook_abandoned``); the receiver may get a
message twice when an answer is lost after it was processed.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry, Counter

log = structlog.get_logger("autoscaler.runtime")


def _target(url: str) -> str:
    """The URL without credentials, query or path beyond the host, fit for a log line."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


class WebhookSender:
    """Delivers JSON payloads to one URL in background tasks."""

    def __init__(
        self, url: str, *, timeout_s: float, retries: int, backoff_s: float = 1.0,
        registry: CollectorRegistry | None = None, deliveries: Counter | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._tasks: set[asyncio.Task[bool]] = set()
        self._deliveries = deliveries
        if deliveries is None and registry is not None:
            self._deliveries = Counter(
                "autoscaler_budget_webhook_deliveries",
                "Alert webhook deliveries by outcome (delivered, failed after every retry)",
                ["outcome"], registry=registry,
            )

    def send(self, payload: Mapping[str, Any]) -> asyncio.Task[bool]:
        """Schedule one delivery and return at once (the task's result: delivered or not)."""
        task = asyncio.get_running_loop().create_task(self._deliver(dict(payload)),
                                                      name="webhook")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload, sort_keys=True, allow_nan=False).encode()
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(delay * (1 + 0.25 * random.random()))
            try:
                status = await asyncio.to_thread(self._post, body)
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
                error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            else:
                if 200 <= status < 300:
                    log.info("webhook_delivered", target=_target(self.url),
                             alert=payload.get("event"), attempts=attempt + 1)
                    self._count("delivered")
                    return True
                error = f"HTTP {status}"
            log.warning("webhook_attempt_failed", target=_target(self.url), attempt=attempt + 1,
                        of=self.retries + 1, error=error)
        log.error("webhook_failed", target=_target(self.url), alert=payload.get("event"),
                  attempts=self.retries + 1, error=error)
        self._count("failed")
        return False

    def _post(self, body: bytes) -> int:
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "queue-autoscaler"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def _count(self, outcome: str) -> None:
        if self._deliveries is not None:
            self._deliveries.labels(outcome).inc()

    async def close(self, grace_s: float = 2.0) -> None:
        """Give deliveries in progress ``grace_s``, then drop them."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            log.warning("webhook_abandoned", target=_target(self.url))
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
