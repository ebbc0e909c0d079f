"""Alert thresholds follow the sizing: the CPU target is the sizing's, and "participants per SFU
node" is what one node of the planned flavor holds, so the planned nodes carry the peak."""

from __future__ import annotations

from pulumi_mocks import sample_config

from visio_infra.model.monitoring import alert_thresholds, sfu_participants_per_node
from visio_infra.model.sizing.plan import plan


def test_cpu_target_is_the_sizing_coefficient():
    config = sample_config(sizing={"coefficients": {"target_cpu_utilisation": 0.6}})
    assert alert_thresholds(config)["monitoring_sfu_cpu_target"] == 0.6
    assert alert_thresholds(sample_config())["monitoring_sfu_cpu_target"] == 0.7


def test_planned_sfu_nodes_carry_the_peak_and_one_node_less_would_not():
    config = sample_config()
    per_node = sfu_participants_per_node(config)
    serving = plan(config).roles["sfu"].serving
    peak = config.audience.peak_participants
    assert per_node * serving >= peak
    assert per_node * (serving - 1) < peak


def test_a_heavier_audience_mix_lowers_the_capacity_per_node():
    flavor = plan(sample_config(audience={"video_share": 0.9})).roles["sfu"].flavor.name
    pinned = {"cloud": {"flavors": {"sfu": flavor}}}
    audio = sample_config(audience={"video_share": 0.1}, **pinned)
    video = sample_config(audience={"video_share": 0.9}, **pinned)
    assert sfu_participants_per_node(audio) > sfu_participants_per_node(video)


def test_the_lab_never_raises_the_cpu_alert_its_shared_cores_would_fake():
    from visio_infra.model.stack_file import load_stack_file, stack_file

    lab = load_stack_file(stack_file("lab"))
    assert alert_thresholds(lab)["monitoring_sfu_cpu_target"] == 1.0  # busy fraction never above 1
    assert lab.sizing.coefficients.target_cpu_utilisation < 1.0  # while the sizing keeps its own


def test_the_lab_never_forecasts_a_full_disk_its_host_fills():
    from visio_infra.model.stack_file import load_stack_file, stack_file

    assert alert_thresholds(load_stack_file(stack_file("lab")))["monitoring_disk_filling_free_fraction"] == 0
    assert alert_thresholds(sample_config())["monitoring_disk_filling_free_fraction"] == 0.25
