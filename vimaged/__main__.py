"""``python -m vimaged``: the daemon."""

from __future__ import annotations

import sys

from vimaged.cli import main

sys.exit(main())
