"""Benchmark of the vimaged-cni client alone: exec to exit against a daemon that answers at once.

Times N execs (default 200) of each of, taking turns so the machine's load falls on all alike:
- ``c``: the compiled client (vimaged_cni/vimaged-cni.c, built as ``python3 -m
  vimaged_cni.launcher`` builds it), DEL: one ``cni_exec`` request;
- ``python``: the ``-IS`` Python launcher the launcher writes with ``--python``, DEL, one request
  (``cni_del`` from today's plugin, ``cni_exec`` from a plugin of the contract);
- ``python -IS -c pass``: the interpreter's start and nothing else, the floor of any Python plugin.

The fake daemon is a child process (its own interpreter, so it shares no GIL with the timing
loop): hello, one request, one reply (``cni_result`` for ``cni_exec``, ``attachments`` for
today's ``cni_del``), close. No network namespace, no root.

usage: python benchmarks/bench_cni_client.py [N]    (run it without nice: it measures)
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vimaged_cni import launcher  # noqa: E402

HELLO = {"reply": "hello", "protocol": 1, "daemon": "bench", "features": []}


def frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return len(body).to_bytes(4, "big") + body


def exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client closed mid-frame")
        data += chunk
    return data


def serve(path: str) -> None:
    """The fake daemon: answers every connection at once, until killed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(frame(HELLO))
            try:
                request = json.loads(exactly(conn, int.from_bytes(exactly(conn, 4), "big")))
            except ConnectionError:
                continue
            if request.get("op") == "cni_exec":
                conn.sendall(frame({"reply": "cni_result", "exit": 0, "stdout": ""}))
            else:
                conn.sendall(frame({"reply": "attachments", "attachments": []}))


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory(prefix="vcb", dir="/tmp") as tmp:
        sock = os.path.join(tmp, "d.sock")
        (Path(tmp) / "c").mkdir()
        (Path(tmp) / "py").mkdir()
        compiled = launcher.install_compiled(os.path.join(tmp, "c"))
        python = launcher.install(os.path.join(tmp, "py"))
        daemon = subprocess.Popen([sys.executable, __file__, "--serve", sock],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert daemon.stdout is not None
            assert daemon.stdout.readline() == "ready\n"
            conf = json.dumps({"cniVersion": "1.1.0", "name": "bench", "type": "vimaged-cni",
                               "socket": sock}).encode()  # fmt: skip
            env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
                   "CNI_PATH": "/opt/cni/bin", "PATH": "/usr/bin:/bin"}  # fmt: skip
            kinds = {
                "c": [compiled],
                "python": [python],
                "python -IS -c pass": [sys.executable, "-IS", "-c", "pass"],
            }
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(n):
                for kind, argv in kinds.items():
                    began = time.perf_counter()
                    done = subprocess.run(argv, input=conf, env=env, stdout=subprocess.PIPE,
                                          check=False)  # fmt: skip
                    times[kind].append(time.perf_counter() - began)
                    if done.returncode != 0:
                        raise RuntimeError(f"{kind}: exit {done.returncode}: {done.stdout!r}")
        finally:
            daemon.kill()
            daemon.wait()
    print(f"{n} execs each, exec to exit, against a daemon answering at once (ms):")
    for kind, seconds in times.items():
        ms = sorted(s * 1e3 for s in seconds)
        p90 = ms[int(len(ms) * 0.9) - 1]
        print(f"  {kind:20} median {statistics.median(ms):6.2f}  min {ms[0]:6.2f}  p90 {p90:6.2f}")


if __name__ == "__main__":
    main()
