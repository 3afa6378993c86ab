"""Every Redis URL form, checked in one place (``autoscaler.ports.redis_urls``) for the queue
sources and the controller's state store and leader election alike."""

from __future__ import annotations

import pytest

from autoscaler.ports.redis_urls import (
    MultiHostUrl,
    parse_multi_host,
    redact_url,
    redis_url_kind,
    validate_redis_url,
)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://h:6379/0", "single"),
        ("rediss://u:p@h/2", "single"),
        ("unix:///run/redis/redis.sock", "unix"),
        ("unix://:secret@/run/redis.sock?db=3", "unix"),
        ("redis+sentinel://s1,s2:26380/gpu-master/1", "sentinel"),
        ("rediss+sentinel://:pw@s1/gpu", "sentinel"),
        ("redis+cluster://n1:7000,n2:7001", "cluster"),
    ],
)
def test_accepted_forms(url: str, kind: str) -> None:
    assert validate_redis_url(url) == url
    assert redis_url_kind(url) == kind


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h/0", "must be redis://"),
        ("unix://relative.sock", "unix:///absolute/path.sock"),
        ("unix:///r.sock?db=x", "database must be a number"),
        ("unix:///r.sock?timeout=3", "unknown option 'timeout'"),
        ("redis+sentinel://s1:26379", "needs the master's name"),
        ("redis+sentinel://s1:port/m", r"is not host\[:port\]"),
        ("redis+sentinel://s1/m/0/extra", "unexpected path"),
        ("redis+cluster://n1/3", "only database 0"),
        ("redis://:pa/ss@h/0", "percent-encoded"),
    ],
)
def test_rejected_forms_say_why_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        validate_redis_url(url)
    assert "ss@" not in str(info.value) and "pa/" not in str(info.value)


def test_multi_host_parts_and_credentials() -> None:
    assert parse_multi_host("rediss+sentinel://app:s%40cret@a,b:26380/gpu/2") == MultiHostUrl(
        tls=True, nodes=(("a", 26379), ("b", 26380)), master="gpu", db=2,
        username="app", password="s@cret",
    )
    assert parse_multi_host("redis+cluster://:pw@n1:7000").password == "pw"
    assert parse_multi_host("redis+cluster://n1").nodes == (("n1", 6379),)


def test_redaction_covers_every_form() -> None:
    assert redact_url("redis+sentinel://:pw@s1,s2/m") == "redis+sentinel://:***@s1,s2/m"
    assert redact_url("unix://u:pw@/r.sock") == "unix://u:***@/r.sock"


def test_the_controller_takes_the_same_forms_as_the_sources() -> None:
    from pydantic import ValidationError

    from autoscaler.config.controller import LeaderElectionConfig, StateStoreConfig

    assert StateStoreConfig(url="unix:///run/redis.sock").url == "unix:///run/redis.sock"
    assert LeaderElectionConfig(url="redis+sentinel://s/gpu").url == "redis+sentinel://s/gpu"
    with pytest.raises(ValidationError, match="has port 0"):
        StateStoreConfig(url="redis://h:0/0")
    with pytest.raises(ValidationError, match="Cluster serves queue sources only"):
        LeaderElectionConfig(url="redis+cluster://n1:7000")
