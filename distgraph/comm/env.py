"""``distgraph.comm.env`` is the launcher's rank discovery (``launch/env.py``), one module under
both names: the launcher reads the same variables without importing any array code."""
import sys

from distgraph_launch import env as _env

sys.modules[__name__] = _env
