"""Unit tests of rc.conf(5) validation (configuration layer): Structs, defaults, every error.

Errors are asserted by the variables they name (the contract), never by their wording.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vimaged import config
from vimaged.config import Bridge, Config, VimageConfig
from vimaged.errors import ConfigError, NotFoundError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def cfg(text: str) -> Config:
    return config.build(config.parse(text, "rc.conf", {}))


def problems(text: str) -> list[str]:
    """The lines of the ConfigError that ``text`` must raise."""
    with pytest.raises(ConfigError) as caught:
        cfg(text)
    return str(caught.value).splitlines()


def names_variable(lines: list[str], variable: str) -> bool:
    return any(re.search(rf"\b{re.escape(variable)}\b", line) for line in lines)


# --------------------------------------------------------------------------- good configs


def test_empty_config_is_the_defaults() -> None:
    assert cfg("") == Config()


def test_seed_vnets_example() -> None:
    result = cfg('vimage_list="NAME"\nvimage_NAME_vnets="em0 em1 fxp0"\n')
    vimage = result.vimages[0]
    assert vimage.vnets == ("em0", "em1", "fxp0")
    assert vimage.bridges == ()


def test_seed_bridges_example() -> None:
    result = cfg('vimage_list="NAME"\nvimage_NAME_bridges="em0 em1 fxp0"\n')
    assert result.vimages[0].bridges == (
        Bridge(index=0, parent="em0", ifname="ng0_NAME"),
        Bridge(index=1, parent="em1", ifname="ng1_NAME"),
        Bridge(index=2, parent="fxp0", ifname="ng2_NAME"),
    )


def test_seed_repeated_bridge_example() -> None:
    vimage = cfg('vimage_list="NAME"\nvimage_NAME_bridges="em0 em0"\n').vimages[0]
    assert [(b.ifname, b.parent) for b in vimage.bridges] == [
        ("ng0_NAME", "em0"),
        ("ng1_NAME", "em0"),
    ]


@pytest.mark.parametrize("mode", ["classic", "uplink"])
def test_bridge_mode_is_read(mode: str) -> None:
    assert cfg(f"vimage_bridge_mode={mode}").bridge_mode == mode


def test_bridge_mode_defaults_to_classic() -> None:
    assert cfg("").bridge_mode == "classic"


def test_every_setting_is_read() -> None:
    text = """
vimage_enable="yes"
vimage_list="web db"
vimage_parallel_start="On"
vimage_mac_scheme="jng"
vimaged_group="operator"
vimage_web_rootdir="/jails/web"
vimage_web_hostname="web.example.org"
vimage_web_bridges="em0 em0"
vimage_web_ether_1="02:00:37:E7:1B:18"
vimage_web_ifname="www"
vimage_web_devfs_ruleset="11"
vimage_web_exec_start="/bin/sh /etc/rc start"
vimage_web_exec_stop="/bin/true"
vimage_web_exec_timeout="120"
vimage_web_exec_consolelog="/var/log/vimage_web.console"
vimage_web_exec_prestart="pfctl -a vimage/web -f /etc/pf.web"
vimage_web_exec_poststop="pfctl -a vimage/web -F all"
vimage_web_stop_timeout="2.5"
vimage_web_parameters="allow.raw_sockets 'osrelease=14.1 custom' enforce_statfs=1"
vimage_web_depend="db"
vimage_web_health_cmd="service nginx status"
vimage_web_health_interval="5"
vimage_web_health_timeout="1.5"
vimage_web_health_retries="2"
vimage_web_health_start_period="20"
vimage_web_restart="on-failure"
vimage_web_restart_limit="3"
vimage_web_restart_window="60"
vimage_db_vnets="em1"
"""
    result = cfg(text)
    assert result.enable is True
    assert result.parallel_start is True
    assert result.mac_scheme == "jng"
    assert result.group == "operator"
    assert [v.name for v in result.vimages] == ["web", "db"]
    assert result.get("web") == VimageConfig(
        name="web",
        hostname="web.example.org",
        rootdir="/jails/web",
        bridges=(
            Bridge(index=0, parent="em0", ifname="ng0_www"),
            Bridge(index=1, parent="em0", ifname="ng1_www", mac="02:00:37:e7:1b:18"),
        ),
        ifname="www",
        devfs_ruleset=11,
        exec_start="/bin/sh /etc/rc start",
        exec_stop="/bin/true",
        exec_timeout=120.0,
        exec_consolelog="/var/log/vimage_web.console",
        exec_prestart="pfctl -a vimage/web -f /etc/pf.web",
        exec_poststop="pfctl -a vimage/web -F all",
        stop_timeout=2.5,
        parameters=("allow.raw_sockets", "osrelease=14.1 custom", "enforce_statfs=1"),
        depend=("db",),
        health_cmd="service nginx status",
        health_interval=5.0,
        health_timeout=1.5,
        health_retries=2,
        health_start_period=20.0,
        restart="on-failure",
        restart_limit=3,
        restart_window=60.0,
    )
    assert result.get("db") == VimageConfig(name="db", hostname="db", ifname="db", vnets=("em1",))
    assert result.get("nope") is None


def test_empty_values_mean_the_default() -> None:
    text = 'vimage_list="web"\nvimage_web_hostname=""\nvimage_web_stop_timeout=""\n'
    text += "vimage_web_ether_3=\nvimage_web_restart=\nvimage_enable=\n"
    assert cfg(text).vimages[0] == VimageConfig(name="web", hostname="web", ifname="web")


@given(
    st.sampled_from(["yes", "true", "on", "1", "no", "false", "off", "0"]),
    st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_yes_no_is_case_insensitive(word: str, upper: list[bool]) -> None:
    spelled = "".join(c.upper() if up else c for c, up in zip(word, upper, strict=False))
    assert cfg(f"vimage_enable={spelled}").enable is (word in ("yes", "true", "on", "1"))


def test_names_are_built_from_the_list_not_split() -> None:
    result = cfg('vimage_list="web web_db"\nvimage_web_db_vnets="em1"\nvimage_web_vnets="em2"\n')
    assert result.vimages[0].vnets == ("em2",)
    assert result.vimages[1].vnets == ("em1",)


def test_fifteen_character_interface_name_is_accepted() -> None:
    vimage = cfg('vimage_list="abcdefghijk"\nvimage_abcdefghijk_bridges="em0"').vimages[0]
    assert vimage.bridges[0].ifname == "ng0_abcdefghijk"


def test_ifname_alias_shortens_interface_names() -> None:
    text = 'vimage_list="averylongname"\nvimage_averylongname_bridges="em0"\n'
    text += "vimage_averylongname_ifname=alng\n"
    assert cfg(text).vimages[0].bridges[0].ifname == "ng0_alng"


def test_variables_of_the_rc_d_scripts_are_tolerated() -> None:
    text = (
        'vimaged_enable="YES"\nvimaged_flags="-v"\nvimaged_socket=/tmp/s\n'
        "vimaged_state_dir=/var/db/x\nvimaged_config=/etc/x\nvimaged_shutdown_timeout=80\n"
        "vimage_flags=x\nvimage_user=root\n"
    )
    assert cfg(text) == Config()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "variable"),
    [
        ("vimage_enable=maybe", "vimage_enable"),
        ("vimage_parallel_start=2", "vimage_parallel_start"),
        ("vimage_mac_scheme=random", "vimage_mac_scheme"),
        ("vimage_bridge_mode=restrictive", "vimage_bridge_mode"),
        ("vimage_bridge_mode=Classic", "vimage_bridge_mode"),
        ("vimaged_group='wheel staff'", "vimaged_group"),
        ('vimage_list="web 42"', "vimage_list"),
        ('vimage_list="web-1"', "vimage_list"),
        ('vimage_list="1web"', "vimage_list"),  # jail_conf refused it at start (issue 12)
        (f'vimage_list="{"a" * 32}"', "vimage_list"),
        ("vimage_list=w\nvimage_w_bridges=-em0", "vimage_w_bridges"),
        ('vimage_list="web web"', "vimage_list"),
        ("vimage_list=w\nvimage_w_rootdir=jails/w", "vimage_w_rootdir"),
        ("vimage_list=w\nvimage_w_hostname='a b'", "vimage_w_hostname"),
        ("vimage_list=w\nvimage_w_vnets='em0 em0'", "vimage_w_vnets"),
        ("vimage_list=w\nvimage_w_vnets='em0/1'", "vimage_w_vnets"),
        ("vimage_list=w\nvimage_w_bridges='averyveryverylongnic0'", "vimage_w_bridges"),
        ("vimage_list=w\nvimage_w_bridges=em0\nvimage_w_ifname=a-b", "vimage_w_ifname"),
        (
            "vimage_list=w\nvimage_w_bridges=em0\nvimage_w_ether_0=02:00:00:00:01",
            "vimage_w_ether_0",
        ),
        (
            "vimage_list=w\nvimage_w_bridges=em0\nvimage_w_ether_0=01:00:5e:00:00:01",
            "vimage_w_ether_0",
        ),
        (
            "vimage_list=w\nvimage_w_bridges=em0\nvimage_w_ether_0=ff:ff:ff:ff:ff:ff",
            "vimage_w_ether_0",
        ),
        (
            "vimage_list=w\nvimage_w_bridges=em0\nvimage_w_ether_0=00:00:00:00:00:00",
            "vimage_w_ether_0",
        ),
        (
            "vimage_list=w\nvimage_w_bridges='em0 em0'\nvimage_w_ether_2=02:00:00:00:00:01",
            "vimage_w_ether_2",
        ),
        ("vimage_list=w\nvimage_w_ether_0=02:00:00:00:00:01", "vimage_w_ether_0"),
        ("vimage_list=w\nvimage_w_devfs_ruleset=eleven", "vimage_w_devfs_ruleset"),
        ("vimage_list=w\nvimage_w_devfs_ruleset=70000", "vimage_w_devfs_ruleset"),
        ("vimage_list=w\nvimage_w_stop_timeout=-1", "vimage_w_stop_timeout"),
        ("vimage_list=w\nvimage_w_stop_timeout=10s", "vimage_w_stop_timeout"),
        ("vimage_list=w\nvimage_w_stop_timeout=inf", "vimage_w_stop_timeout"),
        ("vimage_list=w\nvimage_w_exec_timeout=-1", "vimage_w_exec_timeout"),
        ("vimage_list=w\nvimage_w_exec_consolelog=w.log", "vimage_w_exec_consolelog"),
        ("vimage_list=w\nvimage_w_parameters=exec.consolelog=/x", "vimage_w_exec_consolelog"),
        ("vimage_list=w\nvimage_w_parameters=exec.poststart=true", "vimage_w_exec_poststart"),
        ("vimage_list=w\nvimage_w_parameters=exec.timeout=5", "vimage_w_exec_timeout"),
        ("vimage_list=w\nvimage_w_health_interval=0", "vimage_w_health_interval"),
        ("vimage_list=w\nvimage_w_health_timeout=-5", "vimage_w_health_timeout"),
        ("vimage_list=w\nvimage_w_health_retries=2.5", "vimage_w_health_retries"),
        ("vimage_list=w\nvimage_w_health_retries=0", "vimage_w_health_retries"),
        ("vimage_list=w\nvimage_w_health_start_period=x", "vimage_w_health_start_period"),
        ("vimage_list=w\nvimage_w_restart=sometimes", "vimage_w_restart"),
        ("vimage_list=w\nvimage_w_restart_limit=-3", "vimage_w_restart_limit"),
        ("vimage_list=w\nvimage_w_restart_window=0", "vimage_w_restart_window"),
        ('vimage_list=w\nvimage_w_parameters="\'unclosed"', "vimage_w_parameters"),
        ("vimage_list=w\nvimage_w_parameters='vnet=inherit'", "vimage_w_parameters"),
        ("vimage_list=w\nvimage_w_parameters='path=/x'", "vimage_w_parameters"),
        ("vimage_list=w\nvimage_w_parameters='exec.poststart=x'", "vimage_w_parameters"),
        ("vimage_list=w\nvimage_w_parameters='=1'", "vimage_w_parameters"),
        ("vimage_list=w\nvimage_w_depend=nobody", "vimage_w_depend"),
        ("vimage_list=w\nvimage_w_depend=w", "vimage_w_depend"),
        ("vimage_list=w\nvimage_w_vnet=em0", "vimage_w_vnet"),
        ("vimage_list=w\nvimage_w_ether_01=02:00:00:00:00:01", "vimage_w_ether_01"),
        ("vimage_enabled=YES", "vimage_enabled"),
        ("vimaged_groups=wheel", "vimaged_groups"),
        ("vimaged_grp=wheel", "vimaged_grp"),
        ("vimage_flagz=x", "vimage_flagz"),
    ],
)
def test_error_names_the_variable(text: str, variable: str) -> None:
    assert names_variable(problems(text), variable)


def test_nic_in_two_vimages_vnets_names_both() -> None:
    lines = problems('vimage_list="web db"\nvimage_web_vnets="em1"\nvimage_db_vnets="em1"\n')
    assert len(lines) == 1
    assert names_variable(lines, "vimage_db_vnets")
    assert names_variable(lines, "vimage_web_vnets")
    assert "em1" in lines[0]


@pytest.mark.parametrize("bridged_by", ["web", "db"])
def test_nic_moved_and_bridged_is_refused(bridged_by: str) -> None:
    text = f'vimage_list="web db"\nvimage_db_vnets="em1"\nvimage_{bridged_by}_bridges="em1 em1"\n'
    lines = problems(text)
    assert len(lines) == 1
    assert names_variable(lines, f"vimage_{bridged_by}_bridges")
    assert names_variable(lines, "vimage_db_vnets")


def test_duplicate_explicit_macs_across_vimages() -> None:
    text = (
        'vimage_list="a b"\nvimage_a_bridges=em0\nvimage_b_bridges="em0 em0"\n'
        "vimage_a_ether_0=02:00:00:00:00:01\nvimage_b_ether_1=02-00-00-00-00-01\n"
    )
    lines = problems(text)
    assert names_variable(lines, "vimage_b_ether_1")
    assert names_variable(lines, "vimage_a_ether_0")


def test_interface_name_too_long_suggests_ifname() -> None:
    lines = problems('vimage_list="averylongname"\nvimage_averylongname_bridges="em0"\n')
    assert names_variable(lines, "vimage_averylongname_bridges")
    assert names_variable(lines, "vimage_averylongname_ifname")


def test_eleventh_bridge_of_an_eleven_character_name_is_too_long() -> None:
    text = 'vimage_list="abcdefghijk"\nvimage_abcdefghijk_bridges="' + "em0 " * 11 + '"'
    assert names_variable(problems(text), "vimage_abcdefghijk_bridges")


def test_interface_name_clash_across_vimages() -> None:
    text = (
        'vimage_list="a b"\nvimage_a_bridges=em0\nvimage_b_bridges=em1\n'
        "vimage_a_ifname=x\nvimage_b_ifname=x\n"
    )
    lines = problems(text)
    assert names_variable(lines, "vimage_b_bridges")
    assert names_variable(lines, "vimage_a_bridges")


def test_interface_name_clash_with_a_moved_nic() -> None:
    text = 'vimage_list="a web"\nvimage_a_vnets=ng0_web\nvimage_web_bridges=em0\n'
    lines = problems(text)
    assert names_variable(lines, "vimage_web_bridges")
    assert names_variable(lines, "vimage_a_vnets")


def test_dependency_cycle_is_named() -> None:
    text = 'vimage_list="a b c d"\nvimage_a_depend=b\nvimage_b_depend=c\nvimage_c_depend=a\n'
    text += "vimage_d_depend=a\n"
    lines = problems(text)
    assert len(lines) == 1
    assert re.search(r"\bvimage_[abc]_depend\b", lines[0])
    assert all(re.search(rf"\b{name}\b", lines[0].partition(":")[2]) for name in "abc")


def test_variable_of_a_vimage_missing_from_the_list() -> None:
    lines = problems(
        'vimage_list="web"\nvimage_db_vnets="em1"\nvimage_db_ether_0=02:00:00:00:00:01'
    )
    assert len(lines) == 2
    assert names_variable(lines, "vimage_db_vnets")
    assert names_variable(lines, "vimage_db_ether_0")
    assert all(names_variable([line], "vimage_list") for line in lines)


def test_invalid_name_is_reported_once() -> None:
    lines = problems('vimage_list="42"\nvimage_42_vnets=em0\nvimage_42_ether_0=x\n')
    assert len(lines) == 1
    assert names_variable(lines, "vimage_list")


def test_typo_gets_a_suggestion() -> None:
    lines = problems('vimage_list="web"\nvimage_web_vnet="em1"\n')
    assert names_variable(lines, "vimage_web_vnet")
    assert names_variable(lines, "vimage_web_vnets")


def test_all_problems_are_reported_together() -> None:
    text = (
        'vimage_enable=perhaps\nvimage_list="web db"\nvimage_web_vnets="em1"\n'
        'vimage_db_vnets="em1"\nvimage_db_stop_timeout=-1\nvimage_web_depend=ghost\n'
        "vimage_web_hostnme=x\n"
    )
    lines = problems(text)
    for variable in (
        "vimage_enable",
        "vimage_db_vnets",
        "vimage_db_stop_timeout",
        "vimage_web_depend",
        "vimage_web_hostnme",
    ):
        assert names_variable(lines, variable), variable
    assert len(lines) == 5


# --------------------------------------------------------------------------- start order


def order_config() -> Config:
    return cfg(
        'vimage_list="web db cache proxy solo"\n'
        'vimage_web_depend="db cache"\nvimage_proxy_depend=web\nvimage_cache_depend=db\n'
    )


def test_start_order_levels() -> None:
    result = order_config()
    assert result.start_order(["proxy"]) == [["db"], ["cache"], ["web"], ["proxy"]]
    assert result.start_order(["solo", "cache"]) == [["db", "solo"], ["cache"]]
    assert result.start_order(v.name for v in result.vimages) == [
        ["db", "solo"],
        ["cache"],
        ["web"],
        ["proxy"],
    ]
    assert result.start_order([]) == []


def test_start_order_unknown_name() -> None:
    with pytest.raises(NotFoundError, match="ghost"):
        order_config().start_order(["web", "ghost"])


@given(st.lists(st.sampled_from(["web", "db", "cache", "proxy", "solo"]), unique=True))
def test_start_order_puts_dependencies_first(names: list[str]) -> None:
    result = order_config()
    levels = result.start_order(names)
    position = {name: i for i, level in enumerate(levels) for name in level}
    assert set(names) <= set(position)
    for name in position:
        vimage = result.get(name)
        assert vimage is not None
        assert all(position[dep] < position[name] for dep in vimage.depend)


def test_start_order_of_a_hand_built_config_refuses_cycles_and_unknown_dependencies() -> None:
    # validation refuses both; a Config built by hand meets the same single walk
    a = VimageConfig(name="a", hostname="a", ifname="a", depend=("b",))
    b = VimageConfig(name="b", hostname="b", ifname="b", depend=("a",))
    with pytest.raises(ConfigError):
        Config(vimages=(a, b)).start_order(["a"])
    with pytest.raises(NotFoundError, match="ghost"):
        Config(vimages=(msgspec.structs.replace(a, depend=("ghost",)),)).start_order(["a"])


# --------------------------------------------------------------------------- host NICs


def test_check_host_nics_names_each_variable() -> None:
    result = cfg(
        'vimage_list="web db"\nvimage_web_bridges="em0 fxp0 fxp0"\nvimage_db_vnets="em1 em2"\n'
    )
    config.check_host_nics(result, {"em0", "em1", "em2", "fxp0"})
    with pytest.raises(ConfigError) as caught:
        config.check_host_nics(result, {"em0"})
    lines = str(caught.value).splitlines()
    assert len(lines) == 3  # em2 and em1 of db, fxp0 once for web
    assert names_variable(lines, "vimage_web_bridges")
    assert names_variable(lines, "vimage_db_vnets")


# --------------------------------------------------------------------------- shipped files


def test_defaults_file_matches_the_code() -> None:
    path = str(REPO / "etc/defaults/vimaged")
    assert config.load([path]) == Config(sources=(path,))


@pytest.mark.parametrize("document", ["etc/defaults/vimaged", "docs/vimage.conf.5"])
def test_every_variable_is_documented(document: str) -> None:
    text = (REPO / document).read_text(encoding="utf-8")
    variables = [
        *config.GLOBAL_VARIABLES,
        *(f"vimage_NAME_{setting}" for setting in config.VIMAGE_SETTINGS),
        "vimage_NAME_ether_",
    ]
    missing = [v for v in variables if v.replace("_", r"\_") not in text and v not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("example", "nics"),
    [
        ("vimaged.conf", {"em0", "em1"}),
        ("vimaged-vnets.conf", {"em0", "em1", "fxp0"}),
        ("vimaged-bridges.conf", {"em0", "em1", "fxp0"}),
    ],
)
def test_examples_load_and_fit_their_host(example: str, nics: set[str]) -> None:
    result = config.load([str(REPO / "etc/examples" / example)])
    assert result.enable
    assert result.vimages
    config.check_host_nics(result, nics)


# --------------------------------------------------------------------------- round trip

vimage_names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True), max_size=4)
words = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=8)


@st.composite
def vimage_configs(draw: st.DrawFn) -> list[VimageConfig]:
    result = []
    for i, name in enumerate(dict.fromkeys(draw(vimage_names))):
        parents = draw(st.lists(st.sampled_from(["em0", "em1", "igb0"]), max_size=4))
        vimage_macs = {
            index: f"02:00:00:00:{i:02x}:{index:02x}"
            for index in draw(st.sets(st.integers(0, max(len(parents) - 1, 0))))
            if index < len(parents)
        }
        result.append(
            VimageConfig(
                name=name,
                hostname=draw(st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True)),
                rootdir=draw(st.sampled_from(["/", "/jails/x", "/a b/c"])),
                vnets=tuple(f"vn{i}{j}" for j in range(draw(st.integers(0, 3)))),
                bridges=tuple(
                    Bridge(index=j, parent=p, ifname=f"ng{j}_{name}", mac=vimage_macs.get(j))
                    for j, p in enumerate(parents)
                ),
                ifname=name,
                devfs_ruleset=draw(st.none() | st.integers(0, 65535)),
                exec_start=draw(words.filter(str.strip)).strip() or "x",
                stop_timeout=draw(st.integers(0, 10**6)) / 1000,
                parameters=tuple(
                    f"allow.k{n}={value}" for n, value in enumerate(draw(st.lists(words)))
                ),
                health_cmd=draw(st.none() | st.just("service nginx status")),
                health_retries=draw(st.integers(1, 99)),
                restart=draw(st.sampled_from(["no", "on-failure", "always"])),
            )
        )
    return result


def render(vimages: list[VimageConfig]) -> str:
    lines = [f"vimage_list={shlex.quote(' '.join(v.name for v in vimages))}"]
    for v in vimages:
        prefix = f"vimage_{v.name}_"
        settings = {
            "hostname": v.hostname,
            "rootdir": v.rootdir,
            "vnets": " ".join(v.vnets),
            "bridges": " ".join(b.parent for b in v.bridges),
            "devfs_ruleset": "" if v.devfs_ruleset is None else str(v.devfs_ruleset),
            "exec_start": v.exec_start,
            "stop_timeout": f"{v.stop_timeout:.3f}",
            "parameters": shlex.join(v.parameters),
            "health_cmd": v.health_cmd or "",
            "health_retries": str(v.health_retries),
            "restart": v.restart,
        }
        lines += [f"{prefix}{key}={shlex.quote(value)}" for key, value in settings.items()]
        lines += [f"{prefix}ether_{b.index}={b.mac.upper()}" for b in v.bridges if b.mac]
    return "\n".join(lines) + "\n"


@given(vimage_configs())
def test_rendered_configs_read_back(vimages: list[VimageConfig]) -> None:
    assert cfg(render(vimages)).vimages == tuple(vimages)
