"""Write vimagectl/protocol.schema.json from vimaged/protocol.py.

Run after changing a message type: ``python3 scripts/gen-wire-schema.py``.
tests/unit/test_wire_schema.py fails while the file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vimaged.protocol import wire_schema  # noqa: E402

SCHEMA_FILE = ROOT / "vimagectl" / "protocol.schema.json"


def render() -> str:
    return json.dumps(wire_schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render())
    print(f"wrote {SCHEMA_FILE.relative_to(ROOT)}")
