"""Unit tests of the value limits (vimaged.config_limits): what passes cannot fail later.

Every refusal is asserted by the variable it names and the ``file:line`` that set it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vimaged import cli, config, config_limits, log
from vimaged.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

HEAD = b'vimage_list="web"\nvimage_web_bridges="em0"\n'
"""Two lines: the setting under test is on line 3."""


def load_bytes(tmp_path: Path, body: bytes) -> config.Config:
    path = tmp_path / "rc.conf"
    path.write_bytes(HEAD + body)
    return config.load([str(path)])


def refusal(tmp_path: Path, body: bytes) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_bytes(tmp_path, body)
    return str(caught.value).splitlines()


def names(lines: list[str], variable: str, where: str | None = None) -> bool:
    return any(
        re.match(rf"{re.escape(variable)}:", line) and (where is None or where in line)
        for line in lines
    )


SETTINGS = [
    "exec_start",
    "exec_stop",
    "exec_prestart",
    "exec_poststart",
    "exec_prestop",
    "exec_poststop",
    "exec_consolelog",
    "health_cmd",
    "hostname",
    "rootdir",
    "parameters",
]


def value_for(setting: str, inner: bytes) -> bytes:
    prefix = (
        b"/j/"
        if setting in ("rootdir", "exec_consolelog")
        else b"allow.x=" * (setting == "parameters")
    )
    return prefix + b"a" + inner + b"b"


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("bad", [b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80"], ids=repr)
def test_nul_and_invalid_utf8_are_refused_naming_variable_and_line(
    tmp_path: Path, setting: str, bad: bytes
) -> None:
    body = b"vimage_web_" + setting.encode() + b"='" + value_for(setting, bad) + b"'\n"
    lines = refusal(tmp_path, body)
    assert names(lines, f"vimage_web_{setting}", f"{tmp_path / 'rc.conf'}:3")


@pytest.mark.parametrize("variable", ["vimage_list", "vimage_enable", "vimaged_group"])
def test_globals_are_checked_too(tmp_path: Path, variable: str) -> None:
    path = tmp_path / "rc.conf"
    path.write_bytes(variable.encode() + b"='x\xffy'\n")
    with pytest.raises(ConfigError) as caught:
        config.load([str(path)])
    assert names(str(caught.value).splitlines(), variable, f"{path}:1")


def test_ignored_variables_are_not_checked(tmp_path: Path) -> None:
    # vimaged_flags and rc.subr's vimage_* belong to rc.d scripts and never reach vimaged
    assert load_bytes(tmp_path, b"vimaged_flags='\xff'\nvimage_env='\xff'\n").vimages


@pytest.mark.parametrize(
    ("setting", "maximum"),
    [
        ("exec_start", config_limits.COMMAND_MAX),
        ("health_cmd", config_limits.COMMAND_MAX),
        ("exec_poststop", config_limits.COMMAND_MAX),
        ("rootdir", config_limits.PATH_MAX),
        ("exec_consolelog", config_limits.PATH_MAX),
        ("hostname", config_limits.HOSTNAME_MAX),
    ],
)
def test_sizes_are_limited_in_bytes(tmp_path: Path, setting: str, maximum: int) -> None:
    def body(size: int) -> bytes:
        # two-byte characters: the limit counts bytes, not characters
        value = b"/" + "é".encode() * ((size - 1) // 2) + b"x" * ((size - 1) % 2)
        assert len(value) == size
        return f"vimage_web_{setting}='".encode() + value + b"'\n"

    assert load_bytes(tmp_path, body(maximum)).vimages
    assert names(refusal(tmp_path, body(maximum + 1)), f"vimage_web_{setting}", "rc.conf:3")


def test_a_one_megabyte_exec_start_is_refused(tmp_path: Path) -> None:
    lines = refusal(tmp_path, b"vimage_web_exec_start='" + b"x" * 1024 * 1024 + b"'\n")
    assert names(lines, "vimage_web_exec_start", "rc.conf:3")


def test_any_value_is_limited(tmp_path: Path) -> None:
    big = b"em0 " * (config_limits.VALUE_MAX // 4 + 1)
    assert names(refusal(tmp_path, b"vimage_web_vnets='" + big + b"'\n"), "vimage_web_vnets")


@pytest.mark.parametrize("setting", ["hostname", "rootdir", "exec_consolelog"])
@pytest.mark.parametrize("control", [b"\x01", b"\x1b", b"\x7f", b"\n"], ids=repr)
def test_control_characters_in_names_and_paths_are_refused(
    tmp_path: Path, setting: str, control: bytes
) -> None:
    body = f"vimage_web_{setting}='".encode() + value_for(setting, control) + b"'\n"
    assert names(refusal(tmp_path, body), f"vimage_web_{setting}")


def test_commands_keep_newlines_and_tabs(tmp_path: Path) -> None:
    cfg = load_bytes(tmp_path, b"vimage_web_exec_start='echo a\n\techo b'\n")
    assert cfg.vimages[0].exec_start == "echo a\n\techo b"


def fields_pass(vimage: config.VimageConfig) -> None:
    """What the daemon does with the values later: encode them, hand them to C."""
    msgspec.json.encode(vimage)
    msgspec.msgpack.encode(vimage)
    for value in msgspec.structs.astuple(vimage):
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str):
                assert "\0" not in text
                text.encode("utf-8")


@settings(max_examples=150)
@given(
    setting=st.sampled_from(SETTINGS),
    value=st.binary(max_size=40).filter(lambda b: b"'" not in b),
)
def test_whatever_passes_can_be_encoded_and_executed(setting: str, value: bytes) -> None:
    text = (HEAD + f"vimage_web_{setting}='".encode() + value + b"'\n").decode(
        "utf-8", "surrogateescape"
    )
    try:
        cfg = config.build(config.parse(text, "rc.conf", {}))
    except ConfigError:
        return
    fields_pass(cfg.vimages[0])


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("setting", "bad"),
    [
        ("health_interval", "0.0000001"),
        ("health_interval", "0"),
        ("health_interval", "86401"),
        ("health_interval", "9" * 400),
        ("health_timeout", "0.01"),
        ("health_timeout", "3601"),
        ("health_retries", "5" * 5000),
        ("health_retries", "0"),
        ("health_retries", "1001"),
        ("health_start_period", "86400.5"),
        ("exec_timeout", "86401"),
        ("stop_timeout", "3601"),
        ("restart_limit", "0"),
        ("restart_limit", "1001"),
        ("restart_window", "0.5"),
        ("restart_window", "604801"),
        ("devfs_ruleset", "65536"),
        ("devfs_ruleset", "1" * 5000),
    ],
)
def test_numbers_out_of_range_name_variable_and_range(
    tmp_path: Path, setting: str, bad: str
) -> None:
    lines = refusal(tmp_path, f"vimage_web_{setting}={bad}\n".encode())
    assert names(lines, f"vimage_web_{setting}", "rc.conf:3")
    bounds = config_limits.SECONDS_RANGES.get(setting) or config_limits.INTEGER_RANGES[setting]
    line = next(line for line in lines if line.startswith(f"vimage_web_{setting}:"))
    assert f"{bounds[0]:g}" in line
    assert f"{bounds[1]:g}" in line
    assert len(line) < 200  # a 5,000-digit value is not echoed back


@pytest.mark.parametrize("setting", [*config_limits.SECONDS_RANGES, *config_limits.INTEGER_RANGES])
def test_bounds_are_accepted(tmp_path: Path, setting: str) -> None:
    bounds = config_limits.SECONDS_RANGES.get(setting) or config_limits.INTEGER_RANGES[setting]
    for bound in bounds:
        body = f"vimage_web_{setting}={bound:g}\n".encode()
        value = msgspec.structs.asdict(load_bytes(tmp_path, body).vimages[0])[setting]
        assert value == bound


# --------------------------------------------------------------------------- the host


def test_a_group_that_does_not_exist_is_refused_by_load(tmp_path: Path) -> None:
    lines = refusal(tmp_path, b"vimaged_group=nosuchgroup_vimaged\n")
    assert names(lines, "vimaged_group", "rc.conf:3")


def test_an_existing_group_passes(tmp_path: Path) -> None:
    assert load_bytes(tmp_path, b"vimaged_group=root\n").group == "root"


def test_build_alone_does_not_look_at_the_host() -> None:
    assert config.build({"vimaged_group": "nosuchgroup_vimaged"}).group == "nosuchgroup_vimaged"


def test_check_config_exits_78_for_a_missing_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # logging configured onto capsys's stderr would outlive this test
    monkeypatch.setattr(log, "configure", lambda **_: None)
    path = tmp_path / "rc.conf"
    path.write_text("vimaged_group=nosuchgroup_vimaged\n", encoding="utf-8")
    status = cli.main(["--platform", "sim", "--check-config", "--config", str(path)])
    assert status == cli.EX_CONFIG
    assert "vimaged_group" in capsys.readouterr().err
