"""Sensor discovery on real board layouts written as fake sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetpower.errors import SensorError
from jetpower.sensors import BOARD_RULES, discover, total_rule
from tests.conftest import BOARDS, load_board
from tests.test_nvml import fake_nvml_lib, nvml  # noqa: F401  (fixtures)


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


# -- reading models -------------------------------------------------------------------------

def _models(sensor, label: str) -> dict:
    return sensor.rail(label).to_dict()["reading_models"]


def test_orin_nano_rails_are_window_means_on_the_chip_schedule(fake_sysfs) -> None:
    """Orin Nano (JetPack 6, 3 channels, update_interval 7, samples 1): every value is a 1100 us
    window mean, held, on a 6600 us cycle; CH1 shunt is slot 0, CH3 bus slot 5."""
    sensor = discover(fake_sysfs("orin_nano_jp6"))
    cur, volt = _models(sensor, "VDD_IN")["current"], _models(sensor, "VDD_IN")["voltage"]
    assert cur["kind"] == volt["kind"] == "window_mean"
    assert sensor.rail("VDD_IN").current.reading == "window_mean"  # type: ignore[union-attr]
    assert cur["window_us"] == 1100 and cur["held"] is True
    sched = cur["schedule"]
    assert sched["period_us_nominal"] == 6600 and sched["slots"] == 6
    assert sched["order"] == ["CH1 shunt", "CH1 bus", "CH2 shunt", "CH2 bus", "CH3 shunt",
                              "CH3 bus"]
    assert (sched["slot"], volt["schedule"]["slot"]) == (0, 1)
    assert sched["end_offset_us_nominal"] == 1100
    assert sched["consistent"] is True and sched["assumed"] is False
    assert sched["update_interval_semantics"] == "excludes_averaging"  # L4T R36: kernel 5.15
    assert cur["read"] == "latest_value"
    soc = _models(sensor, "VDD_SOC")
    assert (soc["current"]["schedule"]["slot"], soc["voltage"]["schedule"]["slot"]) == (4, 5)
    assert volt["quantum"] == 8 and volt["unit"] == "mV"
    assert cur["quantum"] is None, "no shunt resistor file: the mA step is not known"


def test_agx_orin_second_chip_disagrees_and_says_so(fake_sysfs) -> None:
    """AGX Orin's second chip converts one channel: update_interval 7 cannot come from 1 x 2 x
    a table conversion time, so its schedule is marked inconsistent (probe decides)."""
    sensor = discover(fake_sysfs("agx_orin_jp6"))
    first = _models(sensor, "VIN_SYS_5V0")["current"]["schedule"]
    assert (first["slot"], first["period_us_nominal"], first["consistent"]) == (4, 6600, True)
    lone = _models(sensor, "VDDQ_VDD2_1V8AO")["current"]
    assert lone["schedule"]["enabled_channels"] == [2] and lone["schedule"]["slots"] == 2
    assert lone["schedule"]["slot"] == 0
    assert lone["schedule"]["consistent"] is False and "disagree" in lone["note"]
    assert lone["window_us"] == 4156  # the entry the driver would pick for 7 ms


def test_nano_jp4_gets_the_driver_default_marked_assumed(fake_sysfs) -> None:
    """JetPack 4's ina3221x shows no configuration: its built-in default (3 channels, 64
    averages of 1100 us) is used and marked assumed."""
    sensor = discover(fake_sysfs("nano_jp4"))
    cur = _models(sensor, "POM_5V_IN")["current"]
    assert cur["kind"] == "window_mean" and cur["schedule"]["assumed"] is True
    assert cur["window_us"] == 1100 * 64 and cur["schedule"]["period_us_nominal"] == 6 * 70400
    assert _models(sensor, "POM_5V_CPU")["voltage"]["schedule"]["slot"] == 5
    assert "0x7727" in cur["schedule"]["source"]


def _chip_tree(root: Path, *, interval: str, samples: str, release: str | None = None,
               shunt: str | None = None) -> Path:
    from jetpower.sensors.simulate import write_tree

    hw = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon0/"
    files = {hw + "update_interval": interval, hw + "samples": samples}
    for n in (1, 2, 3):
        files |= {hw + f"in{n}_label": f"R{n}", hw + f"in{n}_enable": "1",
                  hw + f"in{n}_input": "5000", hw + f"curr{n}_input": "100"}
        if shunt:
            files[hw + f"shunt{n}_resistor"] = shunt
    if release:
        files["etc/nv_tegra_release"] = f"# {release} (release), REVISION: 4.0, GCID: 1"
    write_tree(root, files)
    return root


@pytest.mark.parametrize(("release", "interval", "semantics", "read"), [
    ("R35", "26", "includes_averaging", "waits_for_conversion"),  # JetPack 5, kernel 5.10
    ("R36", "7", "excludes_averaging", "latest_value"),  # JetPack 6, kernel 5.15
    (None, "7", "excludes_averaging", None),  # unknown kernel: the reading that reads back
])
def test_averaging_and_update_interval_semantics(tmp_path: Path, release, interval, semantics,
                                                 read) -> None:
    """With 4 averages the window is 4 x 1100 us and the cycle 26.4 ms, whichever way the kernel
    counts update_interval (with the averaging before Linux 5.14, without it since)."""
    sensor = discover(_chip_tree(tmp_path, interval=interval, samples="4", release=release))
    cur = _models(sensor, "R1")["current"]
    assert cur["window_us"] == 4400 and cur["schedule"]["period_us_nominal"] == 26400
    assert cur["schedule"]["conversion_us"] == 1100 and cur["schedule"]["samples"] == 4
    assert cur["schedule"]["update_interval_semantics"] == semantics
    assert cur["schedule"]["consistent"] is True and cur["read"] == read


@pytest.mark.parametrize(("shunt", "step"), [("5000", 8.0), ("2000", 20.0)])
def test_current_step_from_the_shunt_resistor(tmp_path: Path, shunt: str, step: float) -> None:
    """The mA step is the 40 uV shunt LSB over the shunt: 8 mA at 5 mOhm, 20 mA at 2 mOhm."""
    sensor = discover(_chip_tree(tmp_path, interval="7", samples="1", shunt=shunt))
    assert _models(sensor, "R1")["current"]["quantum"] == step


def test_generic_hwmon_is_instant(tmp_path: Path) -> None:
    """A generic hwmon power file is taken as instantaneous, and says that it is an assumption."""
    from jetpower.sensors.simulate import write_tree

    write_tree(tmp_path, {"sys/class/hwmon/hwmon0/name": "acpi_power",
                          "sys/class/hwmon/hwmon0/power1_input": "15000000"})
    power = discover(tmp_path).rails[0].to_dict()["reading_models"]["power"]
    assert power["kind"] == "instant" and "generic hwmon" in power["note"]


def test_rapl_counter_model(tmp_path: Path) -> None:
    """A RAPL zone's energy_uj is a counter; its model carries the wrap."""
    from jetpower.sensors.simulate import write_tree

    z = "sys/class/powercap/intel-rapl:0/"
    write_tree(tmp_path, {z + "name": "package-0", z + "energy_uj": "123",
                          z + "max_energy_range_uj": "262143328850"})
    model = discover(tmp_path, "rapl").rails[0].to_dict()["reading_models"]["energy"]
    assert model["kind"] == "counter" and model["wrap"] == 262143328851
    assert model["unit"] == "uJ"


def test_nvml_models(nvml, tmp_path: Path) -> None:  # noqa: F811
    """NVML: the instant-power field is instant, nvmlDeviceGetPowerUsage a 1 s window mean with
    no known schedule, the energy reading a counter."""
    gpu = discover(tmp_path, "nvml").rail("GPU0").to_dict()["reading_models"]
    assert gpu["power"]["kind"] == "instant" and gpu["energy"]["kind"] == "counter"
    nvml("nofield")
    avg = discover(tmp_path, "nvml").rail("GPU0").to_dict()["reading_models"]["power"]
    assert avg["kind"] == "window_mean" and avg["window_us"] == 1_000_000
    assert avg["schedule"] is None and avg["held"] is None
