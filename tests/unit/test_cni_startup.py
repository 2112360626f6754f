"""vimaged-cni's fast start: JSON without :mod:`json`, the ``-IS`` launcher, and the modules a
start imports (the IPAM plugin runs in the daemon now: tests/unit/test_cni_exec.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vimaged_cni import cli, jsonc, launcher

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

VALUES = [
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 0}], "x": None},
    [1, -2, 2.5, 1e100, True, False, None, "", 'é\n"\\\x00\u2028', {"": []}],
    "plain",
    0,
    {"nested": {"deeper": [[[]], {}]}},
]


@pytest.mark.parametrize("value", VALUES)
def test_jsonc_writes_and_reads_what_json_does(value: object) -> None:
    assert jsonc.dumps(value) == json.dumps(value)
    assert jsonc.loads(json.dumps(value)) == value
    assert jsonc.loads(f" \n\t{json.dumps(value)}\r\n".encode()) == value


@pytest.mark.parametrize(
    "text", [b"", b" ", b"{", b"[1] 2", b'{"a": 1,}', b"\xff", b"nul", b"[" * 100_000]
)
def test_jsonc_refuses_what_is_no_json_with_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the contract (spec.NetConf)
        jsonc.loads(text)


def test_jsonc_refuses_malformed_json_in_a_start_that_never_imported_json() -> None:
    # The plugin's own start: _json's error path needs json.decoder in sys.modules
    code = (
        f"import sys; sys.path.append({str(ROOT)!r}); from vimaged_cni import jsonc\n"
        "for text in (b'{\"a\": 1', b'{\"a\" 1}', b'[1,]', b'{\"a\": \"\\\\x\"}'):\n"
        "    try: jsonc.loads(text)\n"
        "    except ValueError: continue\n"
        "    raise SystemExit(f'accepted {text!r}')\n"
        "assert 'json' not in sys.modules, 'the test must run without json'\n"
    )
    done = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_jsonc_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        jsonc.dumps({1: "x"})
    with pytest.raises(TypeError):
        jsonc.dumps({"a": object()})


def test_the_launcher_runs_isolated_and_without_site(tmp_path: Path) -> None:
    path = launcher.install(str(tmp_path))
    assert Path(path).read_text().splitlines()[0] == f"#!{sys.executable} -IS"
    assert os.stat(path).st_mode & 0o777 == 0o755
    hostile = tmp_path / "hostile"
    (hostile / "vimaged_cni").mkdir(parents=True)
    (hostile / "vimaged_cni" / "__init__.py").write_text("raise SystemExit('hijacked')")
    env = {"CNI_COMMAND": "VERSION", "PYTHONPATH": str(hostile), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([path], input=b"{}", env=env, cwd=hostile, capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["supportedVersions"] == list(cli.SUPPORTED_VERSIONS)
    launcher.install(str(tmp_path))  # replaced in place, no temporary left
    assert sorted(os.listdir(tmp_path)) == ["hostile", "vimaged-cni"]


def test_the_launcher_refuses_a_path_a_shebang_cannot_hold() -> None:
    with pytest.raises(ValueError, match="python"):
        launcher.launcher_text("/opt/my python/bin/python3", str(ROOT))
    with pytest.raises(ValueError, match="python3"):
        launcher.launcher_text("python3", str(ROOT))


def test_a_start_imports_none_of_the_slow_modules() -> None:
    """json, re, socket, subprocess, typing, enum, ipaddress, contextlib, base64: each costs 1 to
    12 ms of every exec (docs/performance.md); the plugin uses their C parts or does without."""
    code = (
        f"import sys; sys.path.append({str(ROOT)!r}); import vimaged_cni.cli\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    loaded = set(done.stdout.split())
    slow = {"json", "re", "socket", "subprocess", "typing", "enum", "ipaddress", "contextlib",
            "selectors", "threading", "signal", "base64", "struct"}  # fmt: skip
    assert loaded & slow == set()
