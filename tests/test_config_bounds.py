"""What the bounded-config checks (issue 10 item 4) still accept: the valid neighbours of the
tests/bad_configs files, so a check cannot be passing by refusing everything."""

from __future__ import annotations

from autoscaler.config.models import parse_config

POOL = """
  - name: {name}
    queue: {{kind: redis-stream, url: "redis://127.0.0.1:6379/0", key: s, group: {group}}}
    sla: {{max_wait: 2s}}
    capacity: {{max: 4}}
    groups:
      - name: od
        provider: local
        command: [autoscaler, worker, --url, "redis://127.0.0.1:6379/0", --kind, redis-stream,
                  --key, s, "--group={group}"]
"""


def test_two_consumer_groups_of_one_stream_are_two_queues_and_agreeing_commands_pass() -> None:
    text = "controller: {interval: 100ms}\npools:" + POOL.format(name="a", group="ga") + \
        POOL.format(name="b", group="gb")
    config = parse_config(text)
    assert [p.name for p in config.pools] == ["a", "b"]
    # a short interval gets a default sample timeout below it
    assert config.controller.interval == 0.1 and config.controller.sample_timeout == 0.05


def test_the_bounds_themselves_are_accepted() -> None:
    text = "controller: {interval: 1h, sample_timeout: 59m, drain_timeout: 1h}\npools:" + \
        POOL.format(name="a", group="ga")
    ctl = parse_config(text).controller
    assert (ctl.interval, ctl.sample_timeout, ctl.drain_timeout) == (3600.0, 3540.0, 3600.0)
