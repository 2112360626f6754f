"""``python -m vimagectl``: the vimagectl command (vimagectl layer)."""

from __future__ import annotations

import sys

from vimagectl.cli import main

if __name__ == "__main__":
    sys.exit(main())
