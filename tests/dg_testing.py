"""Small helpers shared by the tests (a module of its own: several folders have a conftest.py)."""
import numpy as np

import distgraph as dg


def to_numpy(x):
    """Host copy of a Tensor or array, for comparisons."""
    if isinstance(x, dg.Tensor):
        x = x.array
    return x if isinstance(x, np.ndarray) else x.get()
