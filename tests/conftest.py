"""Shared fixtures: the ``device`` fixture runs a test on ``cpu`` and on ``cuda``
(reported as skipped, never passed, where CuPy or a GPU is missing)."""
import numpy as np
import pytest

import distgraph as dg


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda" and not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    return request.param


def to_numpy(x):
    """Host copy of a Tensor or array, for comparisons."""
    if isinstance(x, dg.Tensor):
        x = x.data
    return x if isinstance(x, np.ndarray) else x.get()
