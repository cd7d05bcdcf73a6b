"""``python -m distgraph.launch`` is ``distgraph-run``."""
import sys

from distgraph.launch.cli import main

sys.exit(main())
