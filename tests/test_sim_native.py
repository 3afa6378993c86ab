"""The C extensions behind the simulator: exact numbers, exact FCFS, and loud misuse.

The loaders and the engine test the extensions end to end; these pin what they promise on
their own: decimal fields parse to the same float64 Python's ``float`` gives wherever that is
exact, timestamps to the epoch seconds ``datetime`` gives, the slot heap to the waits of a
textbook multi-server FCFS queue, and wrong arrays to a TypeError/ValueError naming the
argument instead of memory being reinterpreted.
"""

from __future__ import annotations

import heapq
import shutil
import subprocess
import sysconfig
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.simulations import _parse, kernel


def _parse_one(text: str, kind: int = _parse.NUMBER) -> tuple[tuple[int, int, int, int], float]:
    raw = f"x,y\n{text},1\n".encode()
    out = np.zeros((2, 2))
    kinds = np.array([kind, _parse.NUMBER], dtype=np.int64)
    result = _parse.parse_csv(np.frombuffer(raw, dtype=np.uint8), 4, kinds, out)
    return result, float(out[0, 0])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**15), st.integers(0, 15), st.sampled_from(["", "e3", "E-7", "e+22"]))
def test_decimals_parse_like_python_float(mantissa: int, places: int, exponent: str) -> None:
    digits = str(mantissa).rjust(places + 1, "0")
    text = (digits[:-places] + "." + digits[-places:] if places else digits) + exponent
    result, value = _parse_one(text)
    assert result == (1, _parse.OK, 1, 0)
    # mantissa < 2**53 and |power of ten| <= 22: one correctly rounded operation on exact values
    assert value == float(text)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(datetime(1970, 1, 1), datetime(2199, 12, 31)), st.integers(0, 9_999_999))
def test_timestamps_are_epoch_seconds(when: datetime, ticks: int) -> None:
    when = when.replace(microsecond=0)
    result, value = _parse_one(f"{when:%Y-%m-%d %H:%M:%S}.{ticks:07d}", _parse.TIMESTAMP)
    assert result == (1, _parse.OK, 1, 0)
    whole = (when.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert value - whole == pytest.approx(ticks / 1e7, abs=1e-5)  # float64 ulp at 7e9 s is ~1e-6


@pytest.mark.parametrize(
    ("text", "error"),
    [("1e", _parse.BAD_NUMBER), ("", _parse.BAD_NUMBER), ("-2", _parse.NEGATIVE),
     ("1 2", _parse.BAD_NUMBER), ("0x10", _parse.BAD_NUMBER),
     ("1e999", _parse.NOT_FINITE), ("-1e400", _parse.NOT_FINITE),
     ("9" * 400, _parse.NOT_FINITE)],
)
def test_bad_numbers_report_their_column(text: str, error: int) -> None:
    rows, err, line, col = _parse_one(text)[0]
    assert (rows, err, line, col) == (0, error, 0, 0)


def _fcfs(arrival: np.ndarray, service: np.ndarray, servers: int) -> np.ndarray:
    """Waits on ``servers`` FCFS servers, the textbook way (one heap of free times)."""
    free = [0.0] * servers
    waits = np.zeros(len(arrival))
    for k, (a, s) in enumerate(zip(arrival, service, strict=True)):
        start = max(a, heapq.heappop(free))
        waits[k] = start - a
        heapq.heappush(free, start + s)
    return waits


class Fleet:
    """The kernel's arrays for ``instances`` x ``slots``, all accepting from ``ready``."""

    def __init__(self, n: int, instances: int, slots: int, ready: float = 0.0, rq: int = 8):
        self.slots = slots
        self.accept = np.ones(instances, dtype=np.int8)
        self.ready = np.full(instances, ready)
        self.slot_until = np.zeros(instances * slots)
        self.slot_req = np.full(instances * slots, -1, dtype=np.int64)
        self.heap_t = np.zeros(instances * slots)
        self.heap_s = np.zeros(instances * slots, dtype=np.int64)
        self.ist = np.zeros(kernel.N_SCALARS, dtype=np.int64)
        self.rq_id = np.zeros(rq, dtype=np.int64)
        self.rq_t = np.zeros(rq)
        self.wait = np.zeros(n)
        self.done = np.zeros(n)

    def rebuild(self) -> None:
        kernel.rebuild_heap(self.accept, self.ready, self.slots, self.slot_until, self.heap_t,
                            self.heap_s, self.ist)

    def advance(self, t_end: float, arrival: np.ndarray, service: np.ndarray) -> None:
        kernel.advance(t_end, arrival, service, self.wait, self.done, self.ist, self.rq_id,
                       self.rq_t, self.heap_t, self.heap_s, self.slot_until, self.slot_req)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1), st.integers(1, 9))
def test_advance_in_pieces_equals_textbook_fcfs(
    instances: int, slots: int, seed: int, pieces: int
) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    arrival = np.cumsum(rng.exponential(0.1, n))
    service = rng.exponential(0.1 * instances * slots / 0.9, n)
    fleet = Fleet(n, instances, slots)
    fleet.rebuild()
    for t_end in np.linspace(0, arrival[-1], pieces + 1)[1:]:
        fleet.advance(float(t_end), arrival, service)
    fleet.advance(np.inf, arrival, service)
    assert fleet.ist[kernel.Q_NEXT] == n == fleet.ist[kernel.DISPATCHED]
    assert np.array_equal(fleet.wait, _fcfs(arrival, service, instances * slots))
    # start = arrival + wait only up to rounding: arrival + (start - arrival) may miss start
    # by an ulp (hypothesis found such a seed), so done is compared to the last few ulps.
    np.testing.assert_allclose(fleet.done, arrival + fleet.wait + service, rtol=1e-12, atol=0)


def test_preempted_requests_go_back_first_and_keep_their_wait() -> None:
    arrival = np.array([0.0, 0.0, 1.0])
    service = np.array([10.0, 10.0, 1.0])
    fleet = Fleet(3, instances=1, slots=2)
    fleet.rebuild()
    fleet.advance(2.0, arrival, service)  # 0 and 1 running; 2 waits
    moved = kernel.preempt(0, 2.0, 2, fleet.slot_until, fleet.slot_req, fleet.done, fleet.ist,
                           fleet.rq_id, fleet.rq_t)
    assert moved == 2 and fleet.ist[kernel.REQUEUED] == 2 and np.isnan(fleet.done[:2]).all()
    assert kernel.in_flight(2.0, fleet.slot_until, fleet.slot_req) == 0
    fleet.ready[:] = 5.0  # the replacement comes up at 5 s
    fleet.rebuild()
    fleet.advance(np.inf, arrival, service)
    assert fleet.wait.tolist() == [3.0, 3.0, 14.0]  # re-queued ones first; 2 waits for a slot
    assert fleet.done.tolist() == [15.0, 15.0, 16.0]


def test_wrong_arrays_are_refused_by_name() -> None:
    fleet = Fleet(1, 1, 1)
    with pytest.raises(TypeError, match="heap_s"):
        kernel.rebuild_heap(fleet.accept, fleet.ready, 1, fleet.slot_until, fleet.heap_t,
                            fleet.heap_t, fleet.ist)
    with pytest.raises(TypeError, match=r"slot_until.*C-contiguous"):
        kernel.in_flight(0.0, np.zeros(4)[::2], fleet.slot_req)
    with pytest.raises(TypeError, match=r"heap_t.*writable"):
        frozen = fleet.heap_t.copy()
        frozen.flags.writeable = False
        kernel.rebuild_heap(fleet.accept, fleet.ready, 1, fleet.slot_until, frozen,
                            fleet.heap_s, fleet.ist)
    with pytest.raises(ValueError, match="too short"):
        kernel.rebuild_heap(fleet.accept, fleet.ready, 2, fleet.slot_until, fleet.heap_t,
                            fleet.heap_s, fleet.ist)
    with pytest.raises(ValueError, match="fewer rows"):
        _parse.parse_csv(b"1,2\n3,4\n", 0, np.zeros(2, dtype=np.int64), np.zeros((1, 2)))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on the PATH")
@pytest.mark.parametrize("little_endian", [0, 1])
def test_extensions_compile_on_either_byte_order(tmp_path: Path, little_endian: int) -> None:
    """The build only ever sees this machine's byte order; the other branch of the buffer
    header must compile too (it once held a stray copy of two definitions)."""
    source = Path(kernel.__file__).parent
    header = (source / "_cbuffer.h").read_text()
    assert header.count("#if PY_LITTLE_ENDIAN") == 1
    (tmp_path / "_cbuffer.h").write_text(
        header.replace("#if PY_LITTLE_ENDIAN", f"#if {little_endian}")
    )
    include = sysconfig.get_paths()["include"]
    for name in ("_ckernel.c", "_cparse.c"):
        shutil.copy(source / name, tmp_path / name)
        result = subprocess.run(
            ["cc", "-fsyntax-only", "-Werror=implicit-function-declaration",
             f"-I{include}", f"-I{tmp_path}", str(tmp_path / name)],
            capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stderr
