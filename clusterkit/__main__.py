"""``python -m clusterkit``: the same as the ``clusterkit`` console script."""

import sys

from .cli import main

sys.exit(main())
