"""Unit tests of the rc.conf(5) reader's sh subset (configuration layer): values and file:line."""

from __future__ import annotations

import contextlib
import shlex
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vimaged import config
from vimaged.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def values(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    return config.parse(text, "rc.conf", {} if env is None else env)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("vimage_x=plain", "plain"),
        ("vimage_x=", ""),
        ("vimage_x='single $HOME \\n \"q\"'", 'single $HOME \\n "q"'),
        ('vimage_x="double \\" \\$ \\\\ \\` \\n"', 'double " $ \\ ` \\n'),
        ("vimage_x=back\\ slash\\'s", "back slash's"),
        ("vimage_x=mixed'a b'\"c d\"e", "mixeda bc de"),
        ("vimage_x=a#b  # a comment", "a#b"),
        ('vimage_x="a # b"', "a # b"),
        ("vimage_x=$", "$"),
        ('vimage_x="cost $ 5"', "cost $ 5"),
        ("vimage_x=a;vimage_y=b", "a"),
        ("vimage_x=~/*.conf", "~/*.conf"),  # no tilde or glob expansion in assignments
    ],
)
def test_values_follow_sh_quoting(line: str, expected: str) -> None:
    assert values(line)["vimage_x"] == expected


def test_line_continuation_joins_lines() -> None:
    text = "vimage_x=em0\\\n1\nvimage_y=\"em0 \\\nem1\"\nvimage_z='a\\\nb'\n"
    assert values(text) == {"vimage_x": "em01", "vimage_y": "em0 em1", "vimage_z": "a\\\nb"}


def test_quoted_value_may_span_lines() -> None:
    assert values('vimage_x="em0\nem1"\nvimage_y=2')["vimage_x"] == "em0\nem1"


def test_several_assignments_per_line_and_export() -> None:
    text = "vimage_a=1 vimage_b=2; vimage_c=3\nexport vimage_d=4 vimage_e\nexport PATH\n"
    assert values(text) == {"vimage_a": "1", "vimage_b": "2", "vimage_c": "3", "vimage_d": "4"}


def test_expansion_of_earlier_variables() -> None:
    text = (
        'nics="em0 em1"\n'
        "vimage_a=$nics\n"
        'vimage_b="${nics} fxp0"\n'
        "vimage_c='$nics'\n"
        "vimage_d=${unset}x$unset\n"
        "vimage_e=${vimage_a}_$vimage_a\n"
    )
    assert values(text) == {
        "vimage_a": "em0 em1",
        "vimage_b": "em0 em1 fxp0",
        "vimage_c": "$nics",
        "vimage_d": "x",
        "vimage_e": "em0 em1_em0 em1",
    }


def test_only_vimage_variables_are_kept_but_all_update_env() -> None:
    env: dict[str, str] = {"hostname": "old"}
    found = values('hostname="h.example.org"\nsshd_enable=YES\nvimaged_group=wheel\n', env)
    assert found == {"vimaged_group": "wheel"}
    assert env == {"hostname": "h.example.org", "sshd_enable": "YES", "vimaged_group": "wheel"}


def test_later_assignment_in_a_file_wins() -> None:
    assert values("vimage_x=1\nvimage_x=2\n") == {"vimage_x": "2"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("vimage_x=$(hostname)", 1),
        ("\nvimage_x=`hostname`", 2),
        ('a=1\n\nvimage_x="$(hostname)"', 3),
        ('vimage_x="`id`"', 1),
        ("vimage_x=$((1+2))", 1),
        ("vimage_x=${y:-default}", 1),
        ("vimage_x=${#y}", 1),
        ("vimage_x=${y", 1),
        ("vimage_x=$1", 1),
        ('vimage_x="$@"', 1),
        ("# fine\nvimage_x='never closed\n\n", 2),
        ('a=1\nvimage_x="never closed\nb=2\n', 2),
        (". /etc/rc.conf.d/other", 1),
        ("a=1\nsource /etc/other", 2),
        ("if [ -f x ]; then a=1; fi", 1),
        ("\n\nf() { a=1; }", 3),
        ("vimage_x=1 /bin/sh", 1),
        ("vimage_x=a|b", 1),
        ("vimage_x=a>b", 1),
        ("vimage_x=a\\", 1),
        ("export -p", 1),
        ("vimage-x=1", 1),
        ("a=1 \\\nb=2\nc", 3),
    ],
)
def test_unsupported_sh_names_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError, match=rf"^/etc/rc\.conf:{line}: "):
        config.parse(text, "/etc/rc.conf", {})


sh_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"))


@given(sh_text)
def test_single_quoting_round_trips(value: str) -> None:
    assert values(f"vimage_x={shlex.quote(value)}") == {"vimage_x": value}


@given(sh_text)
def test_double_quoting_round_trips(value: str) -> None:
    quoted = "".join("\\" + c if c in '\\"$`' else c for c in value)
    assert values(f'vimage_x="{quoted}"') == {"vimage_x": value}


@given(st.text("ab $\"'\\#;|`(){}\n\t", max_size=12))
def test_garbage_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        values(text)


# --------------------------------------------------------------------------- files


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_load_expands_across_files_and_later_files_override(tmp_path: Path) -> None:
    first = write(
        tmp_path / "rc.conf",
        'uplink=em0\nvimage_list="web"\nvimage_web_bridges=$uplink\nvimage_web_hostname=a\n',
    )
    second = write(tmp_path / "rc.conf.local", 'vimage_web_bridges="${uplink} em1"\n')
    cfg = config.load([first, second])
    web = cfg.get("web")
    assert web is not None
    assert [b.parent for b in web.bridges] == ["em0", "em1"]
    assert web.hostname == "a"
    assert cfg.sources == (first, second)


def test_load_reads_a_directory_in_name_order(tmp_path: Path) -> None:
    directory = tmp_path / "vimaged"
    directory.mkdir()
    write(directory / "20-web", 'vimage_web_hostname="second"\n')
    write(directory / "10-list", 'vimage_list="web"\nvimage_web_hostname="first"\n')
    cfg = config.load([str(directory)])
    assert cfg.get("web") is not None
    assert cfg.vimages[0].hostname == "second"
    assert cfg.sources == (str(directory / "10-list"), str(directory / "20-web"))


def test_load_defaults_skip_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    present = write(tmp_path / "rc.conf", 'vimage_enable="YES"\n')
    monkeypatch.setattr(config, "DEFAULT_PATHS", (str(tmp_path / "missing"), present))
    cfg = config.load()
    assert cfg.enable is True
    assert cfg.sources == (present,)


def test_load_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError, match=missing):
        config.load([missing])


def test_load_syntax_error_names_the_file(tmp_path: Path) -> None:
    good = write(tmp_path / "a.conf", "vimage_list=web\n")
    bad = write(tmp_path / "b.conf", "\n\nvimage_web_hostname=$(hostname)\n")
    with pytest.raises(ConfigError, match=rf"^{bad}:3: "):
        config.load([good, bad])


def test_load_unknown_variable_error_says_where(tmp_path: Path) -> None:
    path = write(tmp_path / "rc.conf", 'vimage_list="web"\n\nvimage_web_vnet="em1"\n')
    with pytest.raises(ConfigError, match=rf"vimage_web_vnet\b.*{path}:3"):
        config.load([path])
