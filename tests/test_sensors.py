"""Sensor discovery on real board layouts written as fake sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetpower.errors import SensorError
from jetpower.sensors import BOARD_RULES, discover, total_rule
from tests.conftest import BOARDS, load_board


@pytest.mark.parametrize("board", BOARDS)
def test_discovery_matches_board(board: str, fake_sysfs) -> None:
    """Each layout yields exactly the expected rails, in order, and the right total."""
    root = fake_sysfs(board)
    expect = load_board(board)["expect"]
    sensor = discover(root)
    assert list(sensor.labels) == expect["rails"]
    assert sensor.total.to_dict() == expect["total"]
    for skipped in expect["skip"]:
        assert skipped not in sensor.labels


@pytest.mark.parametrize("board", BOARDS)
def test_rail_files_exist_and_units(board: str, fake_sysfs) -> None:
    """Every rail is voltage x current with mV and mA files that exist under the root."""
    sensor = discover(fake_sysfs(board))
    for rail in sensor.rails:
        assert rail.derivation == "v_x_i"
        assert rail.voltage is not None and rail.voltage.unit == "mV" and rail.voltage.path.exists()
        assert rail.current is not None and rail.current.unit == "mA" and rail.current.path.exists()
        assert str(rail.voltage.path).startswith(str(sensor.root))


def test_hwmon_index_is_found_not_assumed(fake_sysfs) -> None:
    """The hwmon index differs per boot and board: discovery globs it (hwmon5 here)."""
    sensor = discover(fake_sysfs("xavier_nx_jp5"))
    assert "hwmon5" in str(sensor.rails[0].voltage.path)  # type: ignore[union-attr]


def test_agx_orin_never_adds_subrail(fake_sysfs) -> None:
    """AGX Orin's total leaves out VDDQ_VDD2_1V8AO (fed from VIN_SYS_5V0) and skips NC channels."""
    sensor = discover(fake_sysfs("agx_orin_jp6"))
    assert "VDDQ_VDD2_1V8AO" in sensor.labels
    assert "VDDQ_VDD2_1V8AO" not in sensor.total.rails
    assert "NC" not in sensor.labels


def test_board_and_jetpack_read(fake_sysfs) -> None:
    """Board model and L4T/JetPack release come from the files under the root."""
    sensor = discover(fake_sysfs("nano_jp4"))
    assert sensor.source == "ina3221x"
    assert sensor.board == "NVIDIA Jetson Nano Developer Kit"
    assert sensor.l4t == "R32.7.4" and sensor.jetpack == "4.6.x"


def test_total_rule_table_is_data() -> None:
    """Sub-rails are never added to an input rail, whatever order the labels come in."""
    for rule in BOARD_RULES:
        labels = (*sorted(rule.needs), "SOME_SUBRAIL")
        assert total_rule(labels).rails == rule.total
    assert total_rule(("VDD_CPU", "VDD_IN", "VDD_GPU")).rails == ("VDD_IN",)


def test_unknown_board_sums_and_says_so() -> None:
    """With no known input rail, the total is the sum and the reason says how to fix it."""
    rule = total_rule(("A", "B"))
    assert rule.rails == ("A", "B") and "total_rail" in rule.reason


def test_no_sensor_message(tmp_path: Path) -> None:
    """No sensor: the error says where it looked and suggests --simulate."""
    with pytest.raises(SensorError, match=r"looked in: .*ina3221.*--simulate"):
        discover(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    """A root that does not exist is named in the error."""
    with pytest.raises(SensorError, match="does not exist"):
        discover(tmp_path / "nope")


def test_select_unknown_rail(fake_sysfs) -> None:
    """Selecting a rail that is not there lists the rails that are."""
    sensor = discover(fake_sysfs("orin_nano_jp6"))
    with pytest.raises(SensorError, match=r"'VDD_GPU'.*VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"):
        sensor.select(("VDD_GPU",))


def test_select_keeps_total_rail(fake_sysfs) -> None:
    """Selecting rails always keeps the rails the total is made of."""
    sensor = discover(fake_sysfs("orin_nano_jp6")).select(("VDD_SOC",))
    assert set(sensor.labels) == {"VDD_IN", "VDD_SOC"}
    named = discover(fake_sysfs("agx_orin_jp6")).select(None, ("VIN_SYS_5V0",))
    assert named.total.rails == ("VIN_SYS_5V0",) and named.total.reason == "named in the plan"


def test_nc_channel_and_disabled_channel_skipped(tmp_path: Path) -> None:
    """Channels labelled NC or disabled (inN_enable = 0) are not rails."""
    from jetpower.sensors.simulate import write_tree

    hw = "sys/bus/i2c/drivers/ina3221/2-0040/hwmon/hwmon0/"
    write_tree(tmp_path, {
        hw + "in1_label": "VDD_IN", hw + "in1_input": "5000", hw + "curr1_input": "100",
        hw + "in2_label": "NC",
        hw + "in3_label": "VDD_X", hw + "in3_enable": "0",
        hw + "in3_input": "1", hw + "curr3_input": "1",
    })
    assert discover(tmp_path).labels == ("VDD_IN",)


def test_generic_hwmon_power_file(tmp_path: Path) -> None:
    """A generic hwmon chip with a power file gives a direct-power rail in uW."""
    from jetpower.sensors.simulate import write_tree

    write_tree(tmp_path, {"sys/class/hwmon/hwmon0/name": "acpi_power",
                          "sys/class/hwmon/hwmon0/power1_input": "15000000"})
    sensor = discover(tmp_path)
    assert sensor.source == "hwmon"
    assert sensor.rails[0].derivation == "power" and sensor.rails[0].power.unit == "uW"  # type: ignore[union-attr]
