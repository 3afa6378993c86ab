"""``prometheus``: a queue measured by PromQL instant queries (vLLM, TGI or any exporter).

Every tick each pool's queries (``depth`` and, when set, ``in_flight``, ``wait``, ``arrivals``,
``completed``) are sent concurrently as ``POST <url>/api/v1/query`` (form-encoded ``query``, the
Prometheus HTTP API; Thanos, Mimir and VictoriaMetrics answer it too). One HTTP session per
server URL and headers serves all its pools. The answer must follow the published shape:
``{"status": "success", "data": {"resultType": "vector" | "scalar", "result": ...}}``.

What a reply means:

* ``status: error`` (bad PromQL, a timeout on the server, 4xx/5xx) → the pool's sample fails
  (stale observation) with the server's ``errorType`` and ``error`` in the log line;
* more than one series → fails: a query must be aggregated to one value (``sum(...)``);
* no series: depth fails (a typo in a metric name must not read as an empty queue; write
  ``... or vector(0)`` when no series means empty, as the presets do); for the other queries it
  is unknown (``None``);
* ``NaN`` or ``±Inf`` (``histogram_quantile`` over a window with no requests) → unknown; a
  depth that is not a finite number fails.

The wait is what the ``wait`` query returns, in seconds: with the presets, a quantile of the
server's queue-time histogram over ``window``, i.e. the wait of requests that LEFT the queue
lately, not the age of the oldest one still waiting (no exporter publishes that). It lags a
building queue by up to the window; the policy's depth-based terms cover that lag.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

try:
    import aiohttp
except ImportError:  # named by the registry's "failed to load" message
    raise ImportError("the prometheus queue kind needs aiohttp: "
                      "pip install 'queue-autoscaler[prometheus]'") from None

from autoscaler.ports.clock import Clock
from autoscaler.ports.errors import SourceError
from autoscaler.sources.polled import PolledSampler, Reading, require, split_credentials
from autoscaler.sources.prometheus.settings import PrometheusSettings

QUERY_PATH = "/api/v1/query"


def parse_value(body: Any, query: str) -> float | None:
    """The single value of an instant query's JSON answer; ``None`` for no series (the caller
    decides what that means); ``SourceError`` when the answer is an error or not the
    documented shape."""
    require(isinstance(body, dict), f"query {query!r}: the answer is not a JSON object")
    if body.get("status") != "success":
        kind = body.get("errorType", "error")
        raise SourceError(f"query {query!r}: {kind}: {body.get('error', 'no error message')}")
    data = body.get("data")
    require(isinstance(data, dict), f"query {query!r}: the answer has no data object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result, query)
    require(kind == "vector" and isinstance(result, list),
            f"query {query!r}: expected an instant vector or scalar, got {kind!r} "
            "(a range vector [..] needs a function such as rate())")
    if not result:
        return None
    if len(result) > 1:
        raise SourceError(f"query {query!r}: returned {len(result)} series, expected one; "
                          "aggregate it, e.g. sum(...)")
    sample = result[0]
    require(isinstance(sample, dict), f"query {query!r}: a vector element is not an object")
    return _number(sample.get("value"), query)


def _number(pair: Any, query: str) -> float:
    require(isinstance(pair, list) and len(pair) == 2,
            f"query {query!r}: a sample is not [time, value]")
    try:
        return float(pair[1])  # Prometheus sends values as strings: "1.5", "NaN", "+Inf"
    except (TypeError, ValueError):
        raise SourceError(f"query {query!r}: value {pair[1]!r} is not a number") from None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class PrometheusSampler(PolledSampler[PrometheusSettings]):
    """All pools of one Prometheus server (see the module docstring)."""

    source = "prometheus"

    def __init__(
        self, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> None:
        super().__init__(pools, clock, timeout_s, PrometheusSettings)
        first = self._pools[0].settings
        self.url, auth = split_credentials(first.url)
        self._headers = {**auth, **first.headers}
        self._session: aiohttp.ClientSession | None = None

    def describe(self, settings: PrometheusSettings) -> str:
        return f"{settings.safe_url()} depth query {settings.depth!r}"

    def _client(self) -> aiohttp.ClientSession:
        """Created on first use: a session binds the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=32),
            )
        return self._session

    async def read(self, pool: str, settings: PrometheusSettings) -> Reading:
        queries = settings.queries()
        values = await asyncio.gather(*(self.query(q) for q in queries.values()))
        got = dict(zip(queries, values, strict=True))
        depth = got["depth"]
        if depth is None:
            raise SourceError(f"depth query {settings.depth!r} returned no series (write "
                              "'... or vector(0)' if no series means an empty queue)")
        if not math.isfinite(depth) or depth < 0:
            raise SourceError(f"depth query {settings.depth!r} returned {depth:g}, "
                              "not a count of requests")
        in_flight = _finite(got.get("in_flight"))
        return Reading(
            depth=round(depth),
            in_flight=None if in_flight is None else round(in_flight),
            oldest_wait_s=_finite(got.get("wait")),
            arrivals=_finite(got.get("arrivals")),
            completed=_finite(got.get("completed")),
        )

    async def query(self, query: str) -> float | None:
        """One instant query's value (see ``parse_value``); HTTP and JSON failures become
        ``SourceError`` naming the query."""
        try:
            async with self._client().post(self.url + QUERY_PATH, data={"query": query}) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    raise SourceError(f"query {query!r}: HTTP {resp.status}, the answer is "
                                      "not JSON (is the URL a Prometheus API?)") from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"query {query!r}: {type(exc).__name__}: {exc}") from exc
        return parse_value(body, query)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class PrometheusSource:
    kind: ClassVar[str] = "prometheus"
    Settings: ClassVar[type[PrometheusSettings]] = PrometheusSettings

    @classmethod
    def sampler_key(cls, settings: BaseModel) -> Hashable:
        """Pools on one server with the same headers share one HTTP session."""
        if not isinstance(settings, PrometheusSettings):
            raise TypeError(f"prometheus: expected PrometheusSettings, got "
                            f"{type(settings).__name__}")
        return ("prometheus", settings.url, tuple(sorted(settings.headers.items())))

    @classmethod
    def make_sampler(
        cls, pools: Sequence[tuple[str, BaseModel]], clock: Clock, timeout_s: float
    ) -> PrometheusSampler:
        return PrometheusSampler(pools, clock, timeout_s)


__all__ = ["PrometheusSampler", "PrometheusSettings", "PrometheusSource", "parse_value"]
