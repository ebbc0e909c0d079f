"""Sizing: properties over random audiences (monotonic, never under-provisioned, minimums, largest
meeting on one node), plus hand-computed examples and the error paths."""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import STACKS_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visio_infra.model import pricing
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.capacity import Audience, Coefficients
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sizing.results import SizingError, SizingPlan
from visio_infra.model.stack_file import load_stack_file

BASES = {
    name: load_stack_file(STACKS_DIR / f"Pulumi.{name}.yaml") for name in ("culture", "finances", "interieur")
}
"""One stack per OpenStack offer (private cloud, Nubo, SecNumCloud public region)."""

DEFAULT = Coefficients()


def with_audience(base: StackConfig, **audience: Any) -> StackConfig:
    return base.model_copy(update={"audience": Audience(**audience)})


def with_cloud(config: StackConfig, **fields: Any) -> StackConfig:
    assert isinstance(config.cloud, OpenStackCloud)
    return config.model_copy(update={"cloud": config.cloud.model_copy(update=fields)})


def with_sizing(config: StackConfig, **fields: Any) -> StackConfig:
    return config.model_copy(update={"sizing": config.sizing.model_copy(update=fields)})


def biggest_flavor(config: StackConfig) -> pricing.Flavor:
    assert isinstance(config.cloud, OpenStackCloud)
    return max(pricing.offer(config.cloud.offer).flavors, key=lambda f: (f.vcpu, f.nic_gbps))


def pin_biggest(config: StackConfig) -> StackConfig:
    from visio_infra.model.config.cloud import Flavors

    name = biggest_flavor(config).name
    return with_cloud(config, flavors=Flavors(sfu=name, turn=name))


@st.composite
def audiences(draw: st.DrawFn) -> dict[str, Any]:
    # Bounds keep every audience servable by every offer (largest meeting and DB fit one node).
    users = draw(st.integers(min_value=2, max_value=1_200_000))
    peak = draw(st.integers(min_value=2, max_value=min(users, 60_000)))
    largest = draw(st.integers(min_value=2, max_value=min(peak, 150)))
    return {
        "users": users,
        "peak_participants": peak,
        "largest_meeting": largest,
        "video_share": draw(st.floats(min_value=0, max_value=1)),
        "turn_share": draw(st.floats(min_value=0, max_value=1)),
    }


bases = st.sampled_from(sorted(BASES))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- independent re-derivation of the load from REFERENCE.md's figures ---------------------------------


def sfu_load(a: dict[str, Any]) -> dict[str, float]:
    v, peak = a["video_share"], a["peak_participants"]
    return {
        "vcpu": peak * (v * 0.09 + (1 - v) * 0.004),
        "out": peak * (v * 5.0 + (1 - v) * 0.06),
        "in": peak * (v * 2.7 + (1 - v) * 0.06),
    }


def sfu_node(flavor: pricing.Flavor) -> dict[str, float]:
    return {"vcpu": (flavor.vcpu - 1.0) * 0.7, "nic": flavor.nic_gbps * 1000 * 0.7}


@given(bases, audiences())
@SETTINGS
def test_never_under_provisions_its_own_stated_capacity(base: str, a: dict[str, Any]) -> None:
    config = with_audience(BASES[base], **a)
    result = plan(config)
    spare = config.sizing.spare_nodes
    for role in ("sfu", "turn"):
        rp = result.roles[role]
        assert rp.count == rp.serving + spare
        for constraint in rp.constraints:
            # serving nodes alone (the spare draining) carry the whole demand
            assert rp.serving * constraint.per_node >= constraint.demand - 1e-9, (role, constraint)
    # and the SFU figures agree with an independent computation from the benchmark coefficients
    sfu = result.roles["sfu"]
    load, node = sfu_load(a), sfu_node(sfu.flavor)
    serving = sfu.count - spare
    assert serving * node["vcpu"] >= load["vcpu"] - 1e-9
    assert serving * node["nic"] >= max(load["out"], load["in"]) - 1e-9
    turn = result.roles["turn"]
    relayed = a["peak_participants"] * a["turn_share"]
    per_participant = sfu_load({**a, "peak_participants": 1})
    assert (turn.count - spare) * turn.flavor.nic_gbps * 700 >= relayed * (
        per_participant["out"] + per_participant["in"]
    ) - 1e-9
    assert (turn.count - spare) * 16000 >= relayed * 2


@given(bases, audiences())
@SETTINGS
def test_minimums_are_respected(base: str, a: dict[str, Any]) -> None:
    config = with_audience(BASES[base], **a)
    counts = plan(config).counts
    spare = config.sizing.spare_nodes
    assert counts["sfu"] >= 2 + spare
    assert counts["turn"] >= 2 + spare
    assert counts["db"] == 3  # a Patroni leader, two standbys, an etcd quorum of three
    assert counts["redis"] == 3
    assert counts["bastion"] == 1


@given(bases, audiences())
@SETTINGS
def test_largest_meeting_fits_on_one_node(base: str, a: dict[str, Any]) -> None:
    result = plan(with_audience(BASES[base], **a))
    node = sfu_node(result.roles["sfu"].flavor)
    meeting = sfu_load({**a, "peak_participants": a["largest_meeting"]})
    assert meeting["vcpu"] <= node["vcpu"] + 1e-9
    assert meeting["out"] <= node["nic"] + 1e-9
    assert meeting["in"] <= node["nic"] + 1e-9
    assert 2 * a["largest_meeting"] <= 10001  # the default UDP range, two ports per participant


def test_largest_meeting_is_also_checked_on_ingress() -> None:
    """With coefficients where a participant sends more than it receives, ingress binds first."""
    config = with_audience(
        BASES["finances"], users=50_000, peak_participants=5_000, video_share=1.0, largest_meeting=150,
        turn_share=0.1,
    )
    coefficients = config.sizing.coefficients.model_copy(
        update={"mbps_in_per_video_participant": 200.0, "mbps_out_per_video_participant": 0.5}
    )
    config = with_sizing(config, coefficients=coefficients)
    with pytest.raises(SizingError) as caught:
        plan(config)
    assert caught.value.field == "visio:audience.largest_meeting"
    # 10 Gbit/s NIC x 0.7 usable / 200 Mbit/s in per participant = 35
    assert "30 000 Mbit/s in" in str(caught.value) and "holds 35." in str(caught.value)


@given(bases, audiences(), st.data())
@SETTINGS
def test_cost_is_monotonic_in_every_audience_figure(
    base: str, a: dict[str, Any], data: st.DataObject
) -> None:
    """A bigger audience never costs less (the cheapest feasible flavor can change, the cost cannot drop)."""
    bigger = dict(a)
    bigger["users"] = data.draw(st.integers(min_value=a["users"], max_value=1_200_000), "users")
    bigger["peak_participants"] = data.draw(
        st.integers(min_value=a["peak_participants"], max_value=min(bigger["users"], 60_000)), "peak"
    )
    bigger["video_share"] = data.draw(st.floats(min_value=a["video_share"], max_value=1), "video")
    bigger["turn_share"] = data.draw(st.floats(min_value=a["turn_share"], max_value=1), "turn")
    small = plan(with_audience(BASES[base], **a))
    large = plan(with_audience(BASES[base], **bigger))
    assert large.monthly_eur >= small.monthly_eur - 1e-6
    for role in ("sfu", "turn", "db"):
        assert large.roles[role].monthly_eur >= small.roles[role].monthly_eur - 1e-6, role


@pytest.mark.parametrize("figure", ["peak_participants", "video_share", "turn_share", "users"])
@given(base=bases, a=audiences(), step=st.floats(min_value=0.0, max_value=1.0))
@SETTINGS
def test_counts_are_monotonic_with_fixed_flavors(
    figure: str, base: str, a: dict[str, Any], step: float
) -> None:
    """With the flavors pinned, raising any one audience figure never removes a node of any role."""
    bigger = dict(a)
    if figure == "peak_participants":
        bigger[figure] = a[figure] + math.floor(step * (min(a["users"], 60_000) - a[figure]))
    elif figure == "users":
        bigger[figure] = a[figure] + math.floor(step * (1_200_000 - a[figure]))
    else:
        bigger[figure] = a[figure] + step * (1 - a[figure])
    config = pin_biggest(BASES[base])
    small = plan(with_audience(config, **a)).counts
    large = plan(with_audience(config, **bigger)).counts
    assert all(large[role] >= small[role] for role in small), (small, large)


@given(bases, audiences())
@settings(max_examples=25, deadline=None)
def test_chosen_flavor_is_the_cheapest_feasible(base: str, a: dict[str, Any]) -> None:
    from visio_infra.model.config.cloud import Flavors

    config = with_audience(BASES[base], **a)
    chosen = plan(config).roles["sfu"].monthly_eur
    assert isinstance(config.cloud, OpenStackCloud)
    for flavor in pricing.offer(config.cloud.offer).flavors:
        try:
            alternative = plan(with_cloud(config, flavors=Flavors(sfu=flavor.name)))
        except SizingError:
            continue
        assert alternative.roles["sfu"].monthly_eur >= chosen - 1e-6, flavor.name


@given(bases, audiences())
@SETTINGS
def test_pinned_flavor_count_is_tight(base: str, a: dict[str, Any]) -> None:
    """Not over-provisioned either: one serving node fewer would not carry the load (unless at the floor)."""
    config = pin_biggest(with_audience(BASES[base], **a))
    sfu = plan(config).roles["sfu"]
    if sfu.serving > 2:
        assert any((sfu.serving - 1) * c.per_node < c.demand for c in sfu.constraints)


# --- hand-computed examples -------------------------------------------------------------------------


def full_video(peak: int, largest: int = 100) -> StackConfig:
    from visio_infra.model.config.cloud import Flavors

    config = with_audience(
        BASES["culture"],
        users=100_000,
        peak_participants=peak,
        video_share=1.0,
        largest_meeting=largest,
        turn_share=0.0,
    )
    return with_cloud(config, flavors=Flavors(sfu="c3-32"))


def test_hand_computed_sfu_count() -> None:
    # c3-32: 16 vCPU, 2 Gbit/s. Usable: (16 - 1) x 0.7 = 10.5 vCPU and 1400 Mbit/s.
    # 1000 participants on video: 90 vCPU -> ceil(90 / 10.5) = 9; 5000 Mbit/s out -> ceil(5000/1400) = 4.
    # 9 serving + 1 spare = 10.
    result = plan(full_video(1000))
    sfu = result.roles["sfu"]
    assert (sfu.count, sfu.serving, sfu.flavor.name) == (10, 9, "c3-32")
    assert {c.name: c.nodes for c in sfu.constraints} == {"cpu": 9, "egress": 4, "ingress": 2, "udp ports": 1}
    assert any(r.what == "nodes" and r.value == "10" for r in sfu.reasoning)


def test_hand_computed_turn_count() -> None:
    # 2000 participants, 50 % relayed, on video: 1000 x (2.7 + 5.0) = 7700 Mbit/s through the relays.
    from visio_infra.model.config.cloud import Flavors

    config = with_audience(
        BASES["culture"],
        users=100_000,
        peak_participants=2000,
        video_share=1.0,
        largest_meeting=100,
        turn_share=0.5,
    )
    config = with_cloud(config, flavors=Flavors(sfu="c3-64", turn="b3-32"))  # b3-32: 2 Gbit/s -> 1400 usable
    turn = plan(config).roles["turn"]
    assert {c.name: c.nodes for c in turn.constraints} == {"bandwidth": 6, "allocations": 1}
    assert (turn.serving, turn.count) == (6, 7)


def test_spare_nodes_add_nodes_and_coefficients_are_honoured() -> None:
    base = full_video(1000, largest=50)
    assert plan(with_sizing(base, spare_nodes=2)).counts["sfu"] == 11
    heavier = with_sizing(base, coefficients=Coefficients(vcpu_per_video_participant=0.18))
    assert plan(heavier).roles["sfu"].serving == math.ceil(1000 * 0.18 / 10.5)


def test_mux_port_has_no_udp_port_limit() -> None:
    from visio_infra.model.config.network import Ports

    config = full_video(1000).model_copy(update={"ports": Ports(sfu_udp_range=None, sfu_udp_mux_port=7882)})
    assert "udp ports" not in {c.name for c in plan(config).roles["sfu"].constraints}


def test_db_follows_users() -> None:
    small = plan(
        with_audience(
            BASES["interieur"],
            users=10_000,
            peak_participants=500,
            video_share=0.5,
            largest_meeting=50,
            turn_share=0.1,
        )
    )
    large = plan(
        with_audience(
            BASES["interieur"],
            users=1_000_000,
            peak_participants=500,
            video_share=0.5,
            largest_meeting=50,
            turn_share=0.1,
        )
    )
    assert small.counts["db"] == 3 and large.counts["db"] == 3
    assert large.roles["db"].flavor.vcpu >= 1_000_000 / DEFAULT.db_users_per_vcpu
    assert large.roles["db"].flavor.ram_gib >= 1_000_000 / DEFAULT.db_users_per_ram_gib
    assert large.db_volume_gib > small.db_volume_gib >= 20


def test_lab_is_pinned_free_and_without_spare_or_bastion() -> None:
    lab = plan(load_stack_file(STACKS_DIR / "Pulumi.lab.yaml"))
    assert lab.counts == {"sfu": 2, "turn": 2, "db": 3, "redis": 3, "bastion": 0, "monitoring": 1}
    assert lab.monthly_eur == 0
    assert all(r.count_pinned for r in lab.roles.values())


def test_every_shipped_stack_plans(stack_config: StackConfig) -> None:
    result: SizingPlan = plan(stack_config)
    assert set(result.counts) == set(result.flavors) == set(ROLES)
    offer = result.offer
    for role, name in result.flavors.items():
        assert name in offer.flavor_names, role
    assert result.yearly_eur == pytest.approx(12 * result.monthly_eur)


# --- errors -------------------------------------------------------------------------------------------


def test_meeting_too_large_for_any_flavor_says_what_fits() -> None:
    config = with_audience(
        BASES["finances"],
        users=50_000,
        peak_participants=5_000,
        video_share=1.0,
        largest_meeting=1_000,
        turn_share=0.1,
    )
    with pytest.raises(SizingError) as caught:
        plan(config)
    assert caught.value.field == "visio:audience.largest_meeting"
    # nubo's biggest flavor: 24 vCPU -> (24 - 1) x 0.7 = 16.1 vCPU / 0.09 = 178 participants on video
    assert "holds 178" in str(caught.value)


def test_meeting_needing_more_ports_than_the_range() -> None:
    from visio_infra.model.config.network import PortRange, Ports

    config = full_video(1000, largest=100).model_copy(
        update={"ports": Ports(sfu_udp_range=PortRange(start=50000, end=50099))}
    )
    with pytest.raises(SizingError) as caught:
        plan(config)
    assert caught.value.field == "visio:ports.sfu_udp_range"
    assert "200 UDP ports" in str(caught.value)


def test_pinned_count_below_demand() -> None:
    config = with_sizing(full_video(1000), nodes={"sfu": 5})
    with pytest.raises(SizingError) as caught:
        plan(config)
    assert caught.value.field == "visio:sizing.nodes.sfu"
    assert "needs 9 serving nodes" in str(caught.value)


def test_pricing_tables_are_sane() -> None:
    for name, offer in pricing.OFFERS.items():
        assert offer.name == name
        assert len(set(offer.flavor_names)) == len(offer.flavors)
        for flavor in offer.flavors:
            assert flavor.vcpu > 0 and flavor.ram_gib > 0 and flavor.nic_gbps > 0
            assert flavor.eur_month >= 0
            assert (flavor.eur_month == 0) == (name in pricing.FREE_OFFERS)
        assert offer.source
    with pytest.raises(KeyError, match="known offers"):
        pricing.offer("aws")
