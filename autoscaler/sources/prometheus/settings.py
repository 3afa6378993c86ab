"""A ``prometheus`` queue: PromQL instant queries for depth, in-flight, wait and counters.

Either the queries are written out, or a ``preset`` names an inference server whose exported
metrics we know (vLLM, TGI) and a ``selector`` picks the deployment's series; a query given
explicitly replaces the preset's.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.ports.redis_urls import redact_url
from autoscaler.sources.polled import validate_http_url

Preset = Literal["vllm", "tgi"]

QUERY_FIELDS = ("depth", "in_flight", "wait", "arrivals", "completed")


def _presets(selector: str, quantile: float, window: str) -> dict[str, dict[str, str]]:
    """The queries of each preset. Depth and in-flight end in ``or vector(0)``: when the
    fleet is at zero no server exports anything, and no series then means an empty queue."""
    s = selector
    return {
        "vllm": {
            "depth": f"sum(vllm:num_requests_waiting{s}) or vector(0)",
            "in_flight": f"sum(vllm:num_requests_running{s}) or vector(0)",
            "wait": (f"histogram_quantile({quantile:g}, sum by (le) "
                     f"(rate(vllm:request_queue_time_seconds_bucket{s}[{window}])))"),
            "completed": f"sum(vllm:request_success_total{s})",
        },
        "tgi": {
            "depth": f"sum(tgi_queue_size{s}) or vector(0)",
            "in_flight": f"sum(tgi_batch_current_size{s}) or vector(0)",
            "wait": (f"histogram_quantile({quantile:g}, sum by (le) "
                     f"(rate(tgi_request_queue_duration_bucket{s}[{window}])))"),
            "completed": f'sum(tgi_request_count{s})',
        },
    }


class PrometheusSettings(BaseModel):
    """Inputs are hidden from validation errors: the URL or a header may carry a secret."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="the Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL; "
                                 "queries go to <url>/api/v1/query")
    preset: Preset | None = Field(default=None, description="queries of a known server")
    selector: str = Field(default="", description='label matchers for the preset, e.g. '
                                                  '{model_name="llama-70b"}')
    quantile: float = Field(default=0.95, gt=0, lt=1, description="preset wait quantile")
    window: str = Field(default="1m", description="preset rate() window of the wait histogram")
    depth: str | None = Field(default=None, description="requests waiting (one series)")
    in_flight: str | None = Field(default=None, description="requests being served")
    wait: str | None = Field(default=None, description="queue wait in seconds")
    arrivals: str | None = Field(default=None, description="counter of requests enqueued")
    completed: str | None = Field(default=None, description="counter of requests finished")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="sent with every query (X-Scope-OrgID, "
                                                "Authorization: use ${ENV} or ${file:})")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_http_url(value, "Prometheus")

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.startswith("{") and value.endswith("}")):
            raise ValueError('selector must be label matchers in braces, e.g. {job="vllm"}')
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]+(ms|s|m|h|d)", value):
            raise ValueError(f"window must be a PromQL duration such as 30s, 1m or 5m, "
                             f"got {value!r}")
        return value

    @field_validator(*QUERY_FIELDS)
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("query must not be empty (leave the field out instead)")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _fill_preset(self) -> PrometheusSettings:
        if self.preset is not None:
            preset = _presets(self.selector, self.quantile, self.window)[self.preset]
            for name in QUERY_FIELDS:
                if getattr(self, name) is None and name in preset:
                    object.__setattr__(self, name, preset[name])
        elif self.selector:
            raise ValueError("selector applies to a preset: set preset, or put the matchers "
                             "in the queries")
        if self.depth is None:
            raise ValueError("depth: a query is required (or a preset: vllm, tgi)")
        return self

    def queries(self) -> dict[str, str]:
        """The configured queries by field, in a fixed order."""
        out: dict[str, str] = {}
        for name in QUERY_FIELDS:
            query = getattr(self, name)
            if query is not None:
                out[name] = query
        return out

    def queue_identity(self) -> str:
        """Two pools on the same depth query would scale for the same queue."""
        return self.depth or ""

    def safe_url(self) -> str:
        return redact_url(self.url)
