"""``python -m wsim``: the ``wsim`` command line (``wsim.commands.cli``) without the installed script."""

import sys

from wsim.commands.cli import main

sys.exit(main())
