"""``python -m ncdma``: the same as the ``ncdma`` command."""

import sys

from ncdma.cli.main import main

sys.exit(main())
