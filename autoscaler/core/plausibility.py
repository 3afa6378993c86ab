"""Is a producer's enqueue timestamp believable? A pure check, shared by every queue source.

Why: a wait computed from a wrong ``enqueued_at`` (0, -5, a millisecond value, a clock far in
the future) reads either as a decades-long wait, which scales out at once, or as zero, which
hides real waits. Such a timestamp is reported as UNKNOWN instead (``oldest_wait_s=None``), so
the policy falls back to what it does without a wait, and the source counts it by reason.

What this does not catch: a timestamp that is wrong by less than the skew tolerance, or one in
the recent past that is merely stale (a producer re-enqueuing with its original time); both
look like real waits.
"""

from __future__ import annotations

import math

SANE_EPOCH = 978_307_200.0
"""2001-01-01T00:00:00Z: no request of this system was enqueued before it."""

DEFAULT_SKEW_S = 5.0
"""How far in the future (producer clock ahead of ours) an enqueue time may be and still count."""

UNREADABLE = "unreadable"
"""A head the source holds but cannot read a time from (not a JSON object, a top-level
``enqueued_at`` that is missing, not a number, or beyond the scanned prefix): the wait is
unknown for the same reason as for an implausible time, and counted the same way."""

REASONS = ("non_finite", "before_epoch", "milliseconds", "future", UNREADABLE)
"""Every reason an enqueue time is not used (``classify_enqueue_time`` gives all but
``unreadable``, which the sources give), for metric labels and docs."""


def classify_enqueue_time(
    enqueued_at: float, wall: float, skew_s: float = DEFAULT_SKEW_S
) -> str | None:
    """``None`` when ``enqueued_at`` (unix seconds) is plausible at wall time ``wall``,
    otherwise the reason it is not (one of ``REASONS``).

    ``milliseconds``: the value divided by 1000 is a plausible time (not in the future beyond
    the skew, after the sane epoch), i.e. a producer wrote ``time.time() * 1000``.
    """
    if not math.isfinite(enqueued_at):
        return "non_finite"
    if enqueued_at < SANE_EPOCH:
        return "before_epoch"
    if enqueued_at > wall + skew_s:
        as_seconds = enqueued_at / 1000.0
        if SANE_EPOCH <= as_seconds <= wall + skew_s:
            return "milliseconds"
        return "future"
    return None
