"""The sampler's fast ``Observation`` builder makes exactly what the dataclass makes."""

from __future__ import annotations

import dataclasses

import pytest

from autoscaler.core.model import Observation
from autoscaler.sources.redis import observations


@pytest.mark.parametrize(
    "values",
    [(1.0, 0, 0.0, 0, None, None), (2.5, 7, None, None, 3.25, 0.0), (9.0, 3, 1.5, 2, 0.1, 0.2)],
)
def test_the_fast_builder_equals_the_dataclass(values: tuple[object, ...]) -> None:
    fast = observations.observation(*values)  # type: ignore[arg-type]
    plain = Observation(*values)  # type: ignore[arg-type]
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert fast.fresh is True and type(fast) is Observation
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.depth = 1  # type: ignore[misc]
    assert dataclasses.replace(fast, fresh=False).fresh is False


def test_the_fast_builder_is_in_use_and_knows_every_field() -> None:
    """If ``Observation`` gains or reorders a field, the sampler falls back to the dataclass;
    this test then fails so that the fast builder is updated, not silently lost."""
    assert tuple(f.name for f in dataclasses.fields(Observation)) == observations.FIELDS
    assert observations.observation is not observations._plain
