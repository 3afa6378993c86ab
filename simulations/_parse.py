"""Compiled byte-level parsers for trace files.

A million-row trace must load in well under a second, so rows are never touched by Python:
the file's bytes go to a numba loop that parses numbers (and Azure timestamps) in place and
checks each row as it goes, returning the first bad line's number and what was wrong with it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

NUMBER = 0
TIMESTAMP = 1

OK = 0
BAD_NUMBER = 1
TOO_FEW_FIELDS = 2
TOO_MANY_FIELDS = 3
NEGATIVE = 4
OUT_OF_ORDER = 5
BAD_TIMESTAMP = 6
BLANK_LINE = 7
MISSING_KEY = 8

MESSAGES = {
    BAD_NUMBER: "not a number",
    TOO_FEW_FIELDS: "too few fields",
    TOO_MANY_FIELDS: "too many fields",
    NEGATIVE: "negative value",
    OUT_OF_ORDER: "time goes backwards (rows must be sorted by time)",
    BAD_TIMESTAMP: "not a timestamp like 2023-11-16 18:15:46.6805900",
    BLANK_LINE: "blank line inside the data",
    MISSING_KEY: "missing key",
}

_POW10 = np.array([10.0**k for k in range(23)])


@njit(cache=True)
def _number(buf: npt.NDArray[np.uint8], i: int, end: int) -> tuple[float, int, int]:
    """Parse a decimal number in buf[i:end]; returns (value, next index, error code)."""
    while i < end and (buf[i] == 32 or buf[i] == 9):
        i += 1
    neg = False
    if i < end and (buf[i] == 45 or buf[i] == 43):
        neg = buf[i] == 45
        i += 1
    mant = 0
    digits = 0
    exp10 = 0
    while i < end and 48 <= buf[i] <= 57:
        if digits < 18:
            mant = mant * 10 + (buf[i] - 48)
        else:
            exp10 += 1
        digits += 1
        i += 1
    if i < end and buf[i] == 46:
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            if digits < 18:
                mant = mant * 10 + (buf[i] - 48)
                exp10 -= 1
            digits += 1
            i += 1
    if digits == 0:
        return 0.0, i, BAD_NUMBER
    if i < end and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        e = 0
        edigits = 0
        while i < end and 48 <= buf[i] <= 57:
            e = min(e * 10 + (buf[i] - 48), 400)
            edigits += 1
            i += 1
        if edigits == 0:
            return 0.0, i, BAD_NUMBER
        exp10 += -e if eneg else e
    while i < end and (buf[i] == 32 or buf[i] == 9):
        i += 1
    value = float(mant)
    if exp10 > 0:
        value = value * _POW10[exp10] if exp10 < 23 else value * 10.0**exp10
    elif exp10 < 0:
        value = value / _POW10[-exp10] if -exp10 < 23 else value / 10.0 ** (-exp10)
    return (-value if neg else value), i, OK


@njit(cache=True)
def _digits(buf: npt.NDArray[np.uint8], i: int, n: int, end: int) -> int:
    """n digits at i as an int, or -1."""
    if i + n > end:
        return -1
    v = 0
    for k in range(n):
        c = buf[i + k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True)
def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's algorithm), valid for the proleptic calendar."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m + 9 if m <= 2 else m - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _timestamp(buf: npt.NDArray[np.uint8], i: int, end: int) -> tuple[float, int, int]:
    """``YYYY-MM-DD[ T]HH:MM:SS[.f...]`` as seconds since the epoch (float64)."""
    while i < end and buf[i] == 32:
        i += 1
    y = _digits(buf, i, 4, end)
    mo = _digits(buf, i + 5, 2, end)
    d = _digits(buf, i + 8, 2, end)
    h = _digits(buf, i + 11, 2, end)
    mi = _digits(buf, i + 14, 2, end)
    s = _digits(buf, i + 17, 2, end)
    if min(y, mo, d, h, mi, s) < 0 or i + 19 > end:
        return 0.0, i, BAD_TIMESTAMP
    if buf[i + 4] != 45 or buf[i + 7] != 45 or buf[i + 13] != 58 or buf[i + 16] != 58:
        return 0.0, i, BAD_TIMESTAMP
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return 0.0, i, BAD_TIMESTAMP
    i += 19
    frac = 0.0
    if i < end and buf[i] == 46:
        i += 1
        scale = 0.1
        while i < end and 48 <= buf[i] <= 57:
            frac += (buf[i] - 48) * scale
            scale *= 0.1
            i += 1
    while i < end and buf[i] == 32:
        i += 1
    seconds = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    return seconds + frac, i, OK


@njit(cache=True)
def parse_csv(
    buf: npt.NDArray[np.uint8],
    start: int,
    kinds: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
) -> tuple[int, int, int, int]:
    """Parse comma-separated rows from ``start``; returns (rows, error, line offset, column).

    Column 0 is time and must not decrease; no value may be negative. Line offsets count from
    the first data line (0), so the caller adds the header's line number.
    """
    n = buf.shape[0]
    ncols = kinds.shape[0]
    row = 0
    line = 0
    i = start
    prev = -1e300
    blank_at = -1
    while i < n:
        end = i
        while end < n and buf[end] != 10:
            end += 1
        stop = end - 1 if end > i and buf[end - 1] == 13 else end
        if stop == i:
            if blank_at < 0:
                blank_at = line
            i = end + 1
            line += 1
            continue
        if blank_at >= 0:
            return row, BLANK_LINE, blank_at, 0
        j = i
        for c in range(ncols):
            if kinds[c] == TIMESTAMP:
                value, j, err = _timestamp(buf, j, stop)
            else:
                value, j, err = _number(buf, j, stop)
            if err != OK:
                return row, err, line, c
            if c < ncols - 1:
                if j >= stop or buf[j] != 44:
                    return row, (TOO_FEW_FIELDS if j >= stop else BAD_NUMBER), line, c
                j += 1
            elif j < stop:
                return row, (TOO_MANY_FIELDS if buf[j] == 44 else BAD_NUMBER), line, c
            if value < 0 and kinds[c] == NUMBER:
                return row, NEGATIVE, line, c
            out[row, c] = value
        if out[row, 0] < prev:
            return row, OUT_OF_ORDER, line, 0
        prev = out[row, 0]
        row += 1
        line += 1
        i = end + 1
    return row, OK, line, 0


@njit(cache=True)
def _find(buf: npt.NDArray[np.uint8], i: int, end: int, key: npt.NDArray[np.uint8]) -> int:
    """Index just past ``key`` in buf[i:end], or -1."""
    k = key.shape[0]
    last = end - k
    while i <= last:
        match = True
        for m in range(k):
            if buf[i + m] != key[m]:
                match = False
                break
        if match:
            return int(i + k)
        i += 1
    return -1


@njit(cache=True)
def parse_jsonl(
    buf: npt.NDArray[np.uint8],
    keys: npt.NDArray[np.uint8],
    key_len: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
) -> tuple[int, int, int, int]:
    """Pull numeric ``"key": value`` pairs out of flat JSON objects, one per line.

    ``keys`` holds each quoted key (``"timestamp"``) padded in a 2-D array. Blank lines are
    skipped. Returns (rows, error, line offset from 0, key index).
    """
    n = buf.shape[0]
    nkeys = key_len.shape[0]
    row = 0
    line = 0
    i = 0
    prev = -1e300
    while i < n:
        end = i
        while end < n and buf[end] != 10:
            end += 1
        j = i
        while j < end and (buf[j] == 32 or buf[j] == 9 or buf[j] == 13):
            j += 1
        if j == end:
            i = end + 1
            line += 1
            continue
        for c in range(nkeys):
            p = _find(buf, i, end, keys[c, : key_len[c]])
            if p < 0:
                return row, MISSING_KEY, line, c
            while p < end and (buf[p] == 32 or buf[p] == 9):
                p += 1
            if p >= end or buf[p] != 58:
                return row, MISSING_KEY, line, c
            value, p, err = _number(buf, p + 1, end)
            if err != OK:
                return row, err, line, c
            if value < 0:
                return row, NEGATIVE, line, c
            out[row, c] = value
        if out[row, 0] < prev:
            return row, OUT_OF_ORDER, line, 0
        prev = out[row, 0]
        row += 1
        line += 1
        i = end + 1
    return row, OK, line, 0
