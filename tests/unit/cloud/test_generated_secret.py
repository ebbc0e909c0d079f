"""Stack-generated credentials: strong, alphanumeric, stable until their shape changes."""

from __future__ import annotations

import pytest

from visio_infra.cloud.generated_secret import ALPHABET, _GeneratedSecretProvider, draw


def test_draw_has_length_prefix_and_every_class():
    value = draw(48, prefix="API")
    assert value.startswith("API") and len(value) == 51
    body = value[3:]
    assert set(body) <= set(ALPHABET)
    assert sum(c.isupper() for c in body) >= 2 and sum(c.islower() for c in body) >= 2
    assert sum(c.isdigit() for c in body) >= 2


def test_draws_differ():
    assert len({draw(32) for _ in range(50)}) == 50


def test_too_short_is_refused():
    with pytest.raises(ValueError, match="at least"):
        draw(4)


def test_provider_keeps_value_unless_shape_changes():
    provider = _GeneratedSecretProvider()
    props = {"kind": "visio-generated-secret", "length": 32, "prefix": ""}
    created = provider.create(props)
    assert len(created.outs["value"]) == 32
    same = provider.diff(created.id, created.outs, props)
    assert not same.changes and not same.replaces
    longer = provider.diff(created.id, created.outs, {**props, "length": 48})
    assert longer.changes and longer.replaces == ["length"]
    assert provider.read(created.id, created.outs).outs["value"] == created.outs["value"]
