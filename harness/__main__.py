"""``python -m harness verify ...``: the same as the ``streamspec`` command (see `harness.cli`)."""

import sys

from harness.cli import main

sys.exit(main())
