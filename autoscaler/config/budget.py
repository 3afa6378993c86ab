"""The ``budget`` blocks: one per pool and one for the whole config (top level).

``monthly_usd`` per calendar month (UTC); at ``alert_at`` of it a log event, the metrics and
the optional webhook announce it; with ``hard_cap`` scale-out the rest of the budget cannot
pay for until the month ends is refused (never below ``capacity.min``). See
``autoscaler.core.budget`` for the arithmetic and ``autoscaler.runtime.budget`` for the daemon.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from autoscaler.config.durations import Duration
from autoscaler.config.plugins import Strict
from autoscaler.core.budget import BudgetSpec


class WebhookConfig(Strict):
    """Where budget alerts are POSTed as JSON; retried with exponential backoff."""

    url: str
    timeout: Duration = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """http(s) with a host; the message never repeats the URL (it may carry a token)."""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("not a valid URL (http[s]://host[:port]/path)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class BudgetConfig(Strict):
    """A monthly budget in US dollars, priced from each group's ``hourly_price``."""

    monthly_usd: float = Field(gt=0, le=1e12)
    alert_at: float = Field(default=0.8, gt=0, le=1)
    hard_cap: bool = False
    webhook: WebhookConfig | None = None

    def spec(self, scope: str) -> BudgetSpec:
        return BudgetSpec(scope, self.monthly_usd, self.alert_at, self.hard_cap)
