"""Capacity options for ``autoscaler plan``: one instance type and market mix, as a pool config.

An option is ``name=a10,slots=8,price=1.2,boot=120`` plus optionally ``spot_price``,
``preemptions_per_hour``, ``on_demand_base`` and ``reserved_price``. It becomes the user's own
config with the planned pool's ``capacity``, ``groups`` and ``policy`` replaced, written as YAML
text and loaded by the daemon's own loader: what is simulated is exactly the text the snippet
shows, so a snippet that simulated also validates.

The groups copy the provider keys of the pool's first group (its account and settings); a real
deployment points each group at its own instance group, which is the one edit the snippet
needs.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from autoscaler.config.durations import parse_duration
from autoscaler.simulations.specs import SpecError, parse_scalar
from autoscaler.simulations.traces import Trace

_REQUIRED = ("name", "slots", "price", "boot")
_OPTIONAL = ("spot_price", "preemptions_per_hour", "on_demand_base", "reserved_price")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")
_GROUP_KEYS = ("name", "market", "hourly_price", "min", "max", "count", "simulation")


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    slots: int
    price: float
    boot_s: float
    spot_price: float | None = None
    preemptions_per_hour: float = 0.0
    on_demand_base: int = 0
    reserved_price: float | None = None

    def canonical(self) -> str:
        """A stable text of every field: part of the cache key."""
        return (f"{self.name}|{self.slots}|{self.price!r}|{self.boot_s!r}|{self.spot_price!r}|"
                f"{self.preemptions_per_hour!r}|{self.on_demand_base}|{self.reserved_price!r}")


def parse_option(text: str) -> Option:
    """``--option name=a10,slots=8,price=1.2,boot=120s[,spot_price=..,...]``."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--option {text!r}: {part!r} is not key=value")
        if key not in _REQUIRED + _OPTIONAL:
            raise SpecError(f"--option {text!r}: unknown key {key!r} (keys: "
                            f"{', '.join(_REQUIRED + _OPTIONAL)})")
        if key in values:
            raise SpecError(f"--option {text!r}: {key!r} given twice")
        values[key] = value.strip()
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise SpecError(f"--option {text!r}: missing {', '.join(missing)}")
    if not _NAME.match(values["name"]):
        raise SpecError(f"--option {text!r}: name {values['name']!r}: lowercase letters, "
                        "digits, '.', '_' and '-' (it names the groups)")
    try:
        option = Option(
            name=values["name"],
            slots=_whole(values["slots"], "slots", 1),
            price=_money(values["price"], "price"),
            boot_s=parse_duration(str(parse_scalar(values["boot"]))),
            spot_price=_money(values["spot_price"], "spot_price")
            if "spot_price" in values else None,
            preemptions_per_hour=_money(values.get("preemptions_per_hour", "0"),
                                        "preemptions_per_hour"),
            on_demand_base=_whole(values.get("on_demand_base", "0"), "on_demand_base", 0),
            reserved_price=_money(values["reserved_price"], "reserved_price")
            if "reserved_price" in values else None,
        )
    except ValueError as exc:
        raise SpecError(f"--option {text!r}: {exc}") from None
    if option.preemptions_per_hour and option.spot_price is None:
        raise SpecError(f"--option {text!r}: preemptions_per_hour needs spot_price")
    return option


def _whole(text: str, key: str, low: int) -> int:
    value = parse_scalar(text)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key}: {text!r} is not a whole number >= {low}")
    return value


def _money(text: str, key: str) -> float:
    value = parse_scalar(text)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key}: {text!r} is not a number >= 0")
    return float(value)


# --------------------------------------------------------------------------- reserved

@dataclass(frozen=True, slots=True)
class ReservedAdvice:
    """How many instances to commit to: the k-th pays off if needed at least ``ratio`` of the
    time (reserved $/h ÷ the $/h it displaces); ``coverage[k-1]`` is that share for k."""

    option: str
    count: int
    reserved_price: float
    displaced_price: float
    coverage: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return self.reserved_price / self.displaced_price if self.displaced_price else math.inf

    def as_json(self) -> dict[str, Any]:
        return {
            "option": self.option, "count": self.count,
            "reserved_price": self.reserved_price, "displaced_price": self.displaced_price,
            "break_even_share": round(self.ratio, 4),
            "coverage": [round(c, 4) for c in self.coverage],
        }


def demand_instances(trace: Trace, slots: int, warmup_s: float, bin_s: float = 60.0) -> Any:
    """Busy instances per ``bin_s`` (busy slot-seconds of the requests arriving in it ÷ slots):
    what even a perfect autoscaler has to run, before headroom."""
    counted = trace.arrival_s >= warmup_s
    arrival, service = trace.arrival_s[counted], trace.service_s[counted]
    if arrival.size == 0:
        return np.zeros(1)
    bins = ((arrival - warmup_s) // bin_s).astype(np.int64)
    busy = np.bincount(bins, weights=service)
    return busy / bin_s / slots


def advise_reserved(option: Option, demands: list[Any]) -> ReservedAdvice | None:
    """The commitment for ``option`` on every trace's demand: the smallest over the traces of
    the largest k whose coverage (share of minutes needing at least k instances) reaches the
    break-even share. The displaced price is the cheapest market the option would otherwise
    buy (spot when it has one: reserving instead of spot pays only below the spot price)."""
    if option.reserved_price is None:
        return None
    displaced = option.price if option.spot_price is None else min(option.price,
                                                                   option.spot_price)
    ratio = option.reserved_price / displaced if displaced else math.inf
    counts, coverage_all = [], []
    for demand in demands:
        top = math.floor(float(demand.max())) if demand.size else 0
        coverage = [float(np.mean(demand >= k)) for k in range(1, top + 1)]
        counts.append(sum(1 for c in coverage if c >= ratio))
        coverage_all.append(coverage)
    count = min(counts) if counts else 0
    worst = coverage_all[counts.index(count)] if counts else []
    return ReservedAdvice(option.name, count, option.reserved_price, displaced,
                          tuple(worst[: max(count + 2, 3)]))


# --------------------------------------------------------------------------- config text

def _duration(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration(str(value))


def pool_blocks(option: Option, base_pool: dict[str, Any], reserved: int) -> dict[str, Any]:
    """The ``capacity`` and ``groups`` of the option (with ``reserved`` committed instances),
    from the base pool's raw YAML mapping; ``simulation`` blocks kept for the simulator."""
    capacity = dict(base_pool.get("capacity") or {})
    capacity["slots_per_instance"] = option.slots
    capacity["boot_time"] = f"{option.boot_s:g}s"
    spread = _duration(capacity.get("boot_time_spread", 0))
    if spread > option.boot_s:
        capacity["boot_time_spread"] = f"{option.boot_s:g}s"
    timeout = capacity.get("boot_timeout")
    if timeout is not None and _duration(timeout) <= option.boot_s + min(spread, option.boot_s):
        del capacity["boot_timeout"]  # the default, 3 x boot_time, fits any boot
    capacity["on_demand_base"] = option.on_demand_base
    capacity["min"] = max(int(capacity.get("min", 0)), reserved)
    capacity["max"] = max(int(capacity.get("max", 1)), reserved, option.on_demand_base, 1)
    if "initial" in capacity:
        capacity["initial"] = min(max(int(capacity["initial"]), capacity["min"]),
                                  capacity["max"])
    template = {k: v for k, v in ((base_pool.get("groups") or [{}])[0]).items()
                if k not in _GROUP_KEYS}
    groups: list[dict[str, Any]] = []
    if reserved > 0:
        assert option.reserved_price is not None
        groups.append({"name": f"{option.name}-reserved", **template, "market": "reserved",
                       "hourly_price": option.reserved_price, "count": reserved})
    if option.spot_price is not None:
        spot: dict[str, Any] = {"name": f"{option.name}-spot", **template, "market": "spot",
                                "hourly_price": option.spot_price}
        if option.preemptions_per_hour:
            spot["simulation"] = {"preemptions_per_hour": option.preemptions_per_hour}
        groups.append(spot)
    groups.append({"name": f"{option.name}-on-demand", **template, "market": "on-demand",
                   "hourly_price": option.price})
    return {"capacity": capacity, "groups": groups}


def option_config_text(raw: dict[str, Any], pool_name: str, option: Option,
                       reserved: int) -> str:
    """The whole config, with only the planned pool, its capacity and groups replaced."""
    doc = copy.deepcopy(raw)
    pools = [p for p in doc.get("pools", []) if p.get("name") == pool_name]
    pool = pools[0]
    pool.update(pool_blocks(option, pool, reserved))
    doc["pools"] = [pool]
    return yaml.safe_dump(doc, sort_keys=False)


def snippet(option: Option, base_pool: dict[str, Any], reserved: int, kind: str,
            params: dict[str, Any]) -> str:
    """The ready-to-deploy ``capacity``/``groups``/``policy`` of a planned pool (YAML)."""
    blocks = pool_blocks(option, base_pool, reserved)
    for group in blocks["groups"]:
        group.pop("simulation", None)  # simulator-only; the daemon ignores it
    body = {**blocks, "policy": {"kind": kind, **params}}
    return yaml.safe_dump(body, sort_keys=False)
