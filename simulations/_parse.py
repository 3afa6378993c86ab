"""Compiled byte-level parsers for trace files.

A million-row trace must load in well under a second, so rows are never touched by Python:
the file's bytes go to a C loop (``simulations/_cparse.c``) that parses numbers (and Azure
timestamps) in place and checks each row as it goes, returning the first bad line's number and
what was wrong with it. This module holds the codes shared with it and re-exports its parsers:

- ``count_lines(buf, start) -> int``: newlines from byte ``start``, to size the output arrays.

- ``parse_csv(buf, start, kinds, out) -> (rows, error, line offset, column)``: comma-separated
  rows from byte ``start``; column 0 is time and must not decrease; no NUMBER may be negative.
  Line offsets count from the first data line (0), so the caller adds the header's line.
- ``parse_jsonl(buf, keys, key_len, out) -> (rows, error, line offset, key index)``: numeric
  ``"key": value`` pairs from flat JSON objects, one per line; blank lines are skipped.
"""

from __future__ import annotations

from autoscaler.simulations._cparse import count_lines as count_lines
from autoscaler.simulations._cparse import parse_csv as parse_csv
from autoscaler.simulations._cparse import parse_jsonl as parse_jsonl

# Column kinds for parse_csv (mirrored in _cparse.c).
NUMBER = 0
TIMESTAMP = 1

# Error codes (mirrored in _cparse.c).
OK = 0
BAD_NUMBER = 1
TOO_FEW_FIELDS = 2
TOO_MANY_FIELDS = 3
NEGATIVE = 4
OUT_OF_ORDER = 5
BAD_TIMESTAMP = 6
BLANK_LINE = 7
MISSING_KEY = 8
NOT_FINITE = 9

MESSAGES = {
    BAD_NUMBER: "not a number",
    TOO_FEW_FIELDS: "too few fields",
    TOO_MANY_FIELDS: "too many fields",
    NEGATIVE: "negative value",
    OUT_OF_ORDER: "time goes backwards (rows must be sorted by time)",
    BAD_TIMESTAMP: "not a timestamp like 2023-11-16 18:15:46.6805900",
    BLANK_LINE: "blank line inside the data",
    MISSING_KEY: "missing key",
    NOT_FINITE: "number too large (not finite)",
}
