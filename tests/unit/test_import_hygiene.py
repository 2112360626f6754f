"""Import hygiene, checked in fresh interpreters (tests, unit tier).

The imports that hurt are transitive, so each check starts a new Python and looks at
``sys.modules``: vimagectl stays free of what would slow its start-up (:data:`HEAVY`), every
module imports on Linux, and the simulated host never loads the netgraph binding it is meant to
check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> object:
    """Run ``code`` in a fresh interpreter; it prints JSON, which is returned."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


HEAVY = ("trio", "structlog", "msgspec", "typing", "argparse", "socket", "vimaged.protocol")
"""What vimagectl's start-up cannot afford (docs/performance.md): each costs 3-30 ms."""


@pytest.mark.parametrize("module", ["vimagectl.cli", "vimagectl.client", "vimagectl.__main__"])
def test_vimagectl_loads_nothing_heavy(module: str) -> None:
    heavy = loaded_after(
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    assert heavy == []


ON_DEMAND = ("re", "json", "enum", "functools", "collections")
"""What vimagectl imports only when a command needs it: ``re`` (and with it enum, functools
and collections, ~8 ms) to check a vimage name, ``json`` not at all (vimagectl/jsontext.py)."""


def test_vimagectl_starts_without_re_or_json() -> None:
    loaded = loaded_after(
        f"import sys, vimagectl.cli\nloaded = [m for m in {ON_DEMAND!r} if m in sys.modules]\n"
        "print('[' + ','.join(map(repr, loaded)).replace(\"'\", '\"') + ']')"
    )
    assert loaded == []


def test_protocol_needs_only_msgspec_and_the_stdlib() -> None:
    ours = loaded_after(
        "import json, sys, vimaged.protocol\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('trio', 'structlog', 'vimagectl') or m.startswith('vimaged.'))))"
    )
    assert ours == ["vimaged.framing", "vimaged.names", "vimaged.protocol"]  # stdlib only


def test_framing_is_the_standard_library_only() -> None:
    """vimagectl frames through it: it must not bring msgspec (or anything) along."""
    loaded = loaded_after(
        "import json, sys\nbefore = set(sys.modules)\nimport vimaged.framing\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before"
        " if m.split('.')[0] not in sys.stdlib_module_names)))"
    )
    assert loaded == ["vimaged", "vimaged.framing"]


EVERY_MODULE = """
import importlib, json, pkgutil, sys, traceback
failed = {}
for package in ("vimaged", "vimagectl"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing runs the program; python -m covers them
        try:
            importlib.import_module(info.name)
        except BaseException as exc:
            failed[info.name] = "".join(traceback.format_exception_only(exc)).strip()
print(json.dumps(failed))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux import check")
def test_every_module_imports_on_linux() -> None:
    assert loaded_after(EVERY_MODULE) == {}


SIMHOST = """
import importlib, json, pkgutil, sys
import vimaged.simhost
for info in pkgutil.walk_packages(vimaged.simhost.__path__, "vimaged.simhost."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
# Not ctypes itself: trio imports it (trio._core._thread_cache).
print(json.dumps(sorted(m for m in sys.modules
                        if m.startswith(("vimaged.netgraph", "vimaged.platforms")))))
"""


def test_simhost_never_loads_the_binding() -> None:
    assert loaded_after(SIMHOST) == []


def test_libc_is_loaded_in_one_place() -> None:
    """vimaged/netgraph/libc.py is the one ``CDLL`` of libc; the platforms load through it."""
    loaders = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "vimaged").rglob("*.py")
        if "CDLL(" in path.read_text()
    )
    assert loaders == ["vimaged/netgraph/libc.py"]
