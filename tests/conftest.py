"""Shared fixtures: the ``device`` fixture runs a test on ``cpu`` and on ``cuda``
(reported as skipped, never passed, where CuPy or a GPU is missing)."""
import pytest

import distgraph as dg


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda" and not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    return request.param

