"""``python -m distgraph.launch`` is ``distgraph-run``."""
import sys

from .cli import main

sys.exit(main())
