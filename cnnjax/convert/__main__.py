"""python -m cnnjax.convert: see cnnjax.convert.cli."""

import sys

from cnnjax.convert.cli import main

sys.exit(main())
