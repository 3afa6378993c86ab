"""Loading request traces into two arrays: arrival times and service times (slot-seconds).

Formats, detected from the header (or a ``.jsonl``/``.json`` extension):

- canonical CSV ``arrival_s,service_s``: seconds from the start, slot-seconds per request;
- Azure LLM inference CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``: absolute timestamps with
  7 fractional digits, made relative to the first row;
- JSON lines with ``timestamp`` (milliseconds from the start), ``input_length``,
  ``output_length``;
- rate series CSV ``t_s,rate_rps``: piecewise-constant rates, turned into arrivals by a seeded
  non-homogeneous Poisson process. Each rate holds until the next row's ``t_s``; the last row's
  rate holds for one more step as long as the step before it (a per-minute series ends after
  its last minute).

Token-only formats get service times from the pool's ``service_model``; the rate series draws
them from its distribution. Every bad row is reported as ``file:line: message``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autoscaler.config.models import ServiceModel
from autoscaler.simulations import _parse

FloatArray = npt.NDArray[np.float64]

CANONICAL = ("arrival_s", "service_s")
AZURE = ("timestamp", "contexttokens", "generatedtokens")
RATES = ("t_s", "rate_rps")
JSONL_KEYS = ("timestamp", "input_length", "output_length")


class TraceError(ValueError):
    """A trace that cannot be read; the message names file and line."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Arrivals sorted by time (seconds from the start) and their service times."""

    name: str
    format: str
    arrival_s: FloatArray
    service_s: FloatArray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0


def token_service_times(
    context: FloatArray, generated: FloatArray, model: ServiceModel
) -> FloatArray:
    """Slot-seconds per request: fixed overhead + prefill at a token rate + per-token decode."""
    prefill = context / model.prefill_tokens_per_s
    service: FloatArray = model.overhead_s + prefill + generated * model.decode_s_per_token
    return service


def sample_service_times(n: int, model: ServiceModel, rng: np.random.Generator) -> FloatArray:
    """Draws from the model's distribution with mean ``mean_s`` and coefficient ``cv``."""
    if model.distribution == "fixed" or model.cv == 0:
        return np.full(n, model.mean_s)
    if model.distribution == "exponential":
        return rng.exponential(model.mean_s, n)
    sigma2 = math.log1p(model.cv**2)
    mu = math.log(model.mean_s) - sigma2 / 2
    return rng.lognormal(mu, math.sqrt(sigma2), n)


def batch_multiplier(points: dict[int, float], concurrency: int) -> float:
    """Service-time multiplier with ``concurrency`` requests sharing an instance.

    Linear between the measured points; below the first point its value (a lone request is
    no faster than the smallest batch measured); beyond the last, the last segment's slope
    continues (more sharing keeps costing: never flattened into an optimistic constant). One
    point is a constant; no points is 1.
    """
    if not points:
        return 1.0
    xs = sorted(points)
    if len(xs) == 1 or concurrency <= xs[0]:
        return float(points[xs[0] if concurrency <= xs[0] else xs[-1]])
    for lo, hi in itertools.pairwise(xs):
        if concurrency <= hi:
            frac = (concurrency - lo) / (hi - lo)
            return points[lo] + frac * (points[hi] - points[lo])
    lo, hi = xs[-2], xs[-1]
    slope = (points[hi] - points[lo]) / (hi - lo)
    return max(1e-9, points[hi] + slope * (concurrency - hi))


def batched(trace: Trace, model: ServiceModel, slots_per_instance: int) -> Trace:
    """The trace with service times stretched by the batching table at full occupancy.

    An instance with S slots serves up to S requests at once; the table says what that costs
    each of them. The simulator applies the multiplier at S (the batch a loaded instance
    runs), which is exact for a busy fleet, where the cost is decided, and pessimistic for a
    nearly idle one.
    """
    factor = batch_multiplier(model.batching, slots_per_instance)
    if factor == 1.0:
        return trace
    return Trace(trace.name, trace.format, trace.arrival_s, trace.service_s * factor)


def load_trace(
    path: str | Path, service_model: ServiceModel | None = None, seed: int = 0
) -> Trace:
    """Read any supported trace; raises ``TraceError`` naming ``file:line`` on bad input."""
    path = Path(path)
    model = service_model or ServiceModel()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace: {exc.strerror or exc}") from None
    buf = np.frombuffer(raw, dtype=np.uint8)
    first_nl = raw.find(b"\n")
    header_end = len(raw) if first_nl < 0 else first_nl
    header = raw[:header_end].decode("utf-8", "replace").strip().lstrip("\ufeff")
    columns = tuple(c.strip().lower() for c in header.split(","))
    start = min(len(raw), header_end + 1)
    if path.suffix in {".jsonl", ".json"} or header.startswith("{"):
        return _jsonl(path, buf, model)
    if columns == CANONICAL:
        table = _csv(path, buf, start, (_parse.NUMBER, _parse.NUMBER), columns)
        return Trace(path.name, "canonical", table[:, 0].copy(), table[:, 1].copy())
    if columns == AZURE:
        kinds = (_parse.TIMESTAMP, _parse.NUMBER, _parse.NUMBER)
        table = _csv(path, buf, start, kinds, columns)
        arrival = table[:, 0] - table[0, 0] if len(table) else table[:, 0]
        service = token_service_times(table[:, 1], table[:, 2], model)
        return Trace(path.name, "azure", np.ascontiguousarray(arrival), service)
    if columns == RATES:
        table = _csv(path, buf, start, (_parse.NUMBER, _parse.NUMBER), columns)
        return _from_rates(path, table, model, seed)
    raise TraceError(
        f"{path}:1: unknown trace header {header[:80]!r}; expected one of "
        f"'arrival_s,service_s', 'TIMESTAMP,ContextTokens,GeneratedTokens', 't_s,rate_rps' "
        f"or JSON lines with {', '.join(JSONL_KEYS)}"
    )


def _csv(
    path: Path, buf: npt.NDArray[np.uint8], start: int, kinds: tuple[int, ...],
    columns: tuple[str, ...],
) -> FloatArray:
    rows = _parse.count_lines(buf, start) + 1
    out = np.empty((rows, len(kinds)), dtype=np.float64)
    n, err, line, col = _parse.parse_csv(buf, start, np.array(kinds, dtype=np.int64), out)
    if err != _parse.OK:
        raise TraceError(f"{path}:{line + 2}: column {columns[col]!r}: {_parse.MESSAGES[err]}")
    if n == 0:
        raise TraceError(f"{path}:2: the trace has no rows")
    return out[:n]


def _jsonl(path: Path, buf: npt.NDArray[np.uint8], model: ServiceModel) -> Trace:
    rows = _parse.count_lines(buf, 0) + 1
    width = max(len(k) for k in JSONL_KEYS) + 2
    keys = np.zeros((len(JSONL_KEYS), width), dtype=np.uint8)
    for index, key in enumerate(JSONL_KEYS):
        quoted = f'"{key}"'.encode()
        keys[index, : len(quoted)] = np.frombuffer(quoted, dtype=np.uint8)
    lengths = np.array([len(k) + 2 for k in JSONL_KEYS], dtype=np.int64)
    out = np.empty((rows, len(JSONL_KEYS)), dtype=np.float64)
    n, err, line, col = _parse.parse_jsonl(buf, keys, lengths, out)
    if err != _parse.OK:
        what = _parse.MESSAGES[err]
        raise TraceError(f"{path}:{line + 1}: key {JSONL_KEYS[col]!r}: {what}")
    if n == 0:
        raise TraceError(f"{path}:1: the trace has no rows")
    table = out[:n]
    arrival = (table[:, 0] - table[0, 0]) / 1000.0
    service = token_service_times(table[:, 1], table[:, 2], model)
    return Trace(path.name, "jsonl", np.ascontiguousarray(arrival), service)


def _from_rates(path: Path, table: FloatArray, model: ServiceModel, seed: int) -> Trace:
    """Seeded non-homogeneous Poisson arrivals from a piecewise-constant rate series."""
    starts = table[:, 0]
    rates = table[:, 1]
    if len(starts) < 2:
        raise TraceError(f"{path}:2: a rate series needs at least two rows to define a step")
    steps = np.diff(starts)
    if np.any(steps <= 0):
        bad = int(np.argmax(steps <= 0)) + 3
        raise TraceError(f"{path}:{bad}: column 't_s': times must strictly increase")
    ends = np.append(starts[1:], starts[-1] + steps[-1])
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rates * (ends - starts))
    total = int(counts.sum())
    offsets = np.repeat(starts, counts)
    widths = np.repeat(ends - starts, counts)
    arrival = offsets + rng.random(total) * widths
    arrival.sort(kind="stable")
    service = sample_service_times(total, model, rng)
    return Trace(path.name, "rates", arrival, service)


def write_canonical(path: str | Path, arrival_s: FloatArray, service_s: FloatArray) -> None:
    """Write a canonical trace (the format ``autoscaler simulate`` reads fastest)."""
    table = np.column_stack([arrival_s, service_s])
    np.savetxt(path, table, fmt="%.6f", delimiter=",", header="arrival_s,service_s", comments="")
