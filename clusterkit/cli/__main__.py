"""``python -m clusterkit.cli``: the same as the ``clusterkit`` console script."""

import sys

from .main import main

sys.exit(main())
