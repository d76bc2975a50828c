"""``python -m streamspec verify ...``: the same as the ``streamspec`` command (see `streamspec.cli`)."""

import sys

from streamspec.cli import main

sys.exit(main())
