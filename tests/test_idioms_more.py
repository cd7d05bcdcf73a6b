"""PyTorch idioms found by the torch-vs-distgraph programs (tests/compat/test_programs_more.py),
checked here one by one against torch: tensor printing, ``tensor(..., dtype=float64)`` precision,
``generator=`` on the random factories."""
import numpy as np
import pytest

import distgraph as dg

torch = pytest.importorskip("torch")

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------- printing
@pytest.mark.parametrize("values", [
    [0.8506, 0.637, 0.5111], [1.5, 2.25], [1., 2.], [1e-5, 1.], [1e6, 1.], [0.1234567, 12.5],
    [[1., -2.5], [3., 4.]], [NAN, 1.], [INF, -1.5, 0.], [0., 0.], [1e9, 2e9], [-0.0001, 0.5], 2.5, 7.0, [],
    [[1e-8, 1.]], [12345.678, 0.1], [100., 0.05], [NAN], np.linspace(-3, 3, 30).tolist(),
    (np.arange(2000.) / 7).reshape(40, 50).tolist(), [-5, 300], np.arange(2000).tolist(), [[True, False]],
], ids=lambda v: str(v)[:30])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_repr_as_torch(values, dtype):
    kind = np.asarray(values).dtype.kind
    t = torch.tensor(values, dtype=getattr(torch, dtype)) if kind == "f" else torch.tensor(values)
    d = dg.tensor(values, dtype=getattr(dg, dtype)) if kind == "f" else dg.tensor(values)
    theirs = repr(t).replace("torch.", "")
    if "\n" in theirs.rsplit("]", 1)[-1]:           # torch's longer "dtype=torch.float64" went to a new line
        theirs = theirs.rsplit(",\n", 1)[0] + ", " + theirs.rsplit(",\n", 1)[1].strip()
    assert repr(d) == theirs


def test_repr_puts_a_suffix_that_does_not_fit_on_a_new_line():
    d = repr(dg.linspace(-3, 3, 31, dtype=dg.float16))
    assert d.endswith("3.0000],\n       dtype=float16)"), d
    assert all(len(line) <= 80 for line in d.splitlines())


# ---------------------------------------------------- tensor(..., dtype=)
def test_tensor_from_python_floats_with_float64_keeps_every_digit():
    for lib in (dg, torch):
        assert lib.tensor([0.1], dtype=lib.float64).item() == 0.1
        assert lib.tensor([[1 / 3]], dtype=lib.float64).tolist() == [[1 / 3]]
        assert lib.tensor([0.1]).dtype == lib.float32


# --------------------------------------------------------- generator=
@pytest.mark.parametrize("draw", [
    lambda L, g: L.randperm(10, generator=g),
    lambda L, g: L.rand(2, 3, generator=g),
    lambda L, g: L.randn(4, generator=g, dtype=L.float64),
    lambda L, g: L.randint(0, 7, (5,), generator=g),
    lambda L, g: L.randint(7, size=(2, 2), generator=g),
], ids=["randperm", "rand", "randn", "randint", "randint_high"])
def test_generator_gives_its_own_reproducible_stream_as_in_torch(draw):
    for lib in (torch, dg):
        g = lib.Generator().manual_seed(7)
        a = draw(lib, g)
        lib.manual_seed(0)
        lib.rand(5)                                   # the global stream is not the generator's
        b = draw(lib, lib.Generator().manual_seed(7))
        assert lib.equal(a, b), lib
        c = draw(lib, g)                              # and the generator advances
        assert a.shape == c.shape and (a.numel() < 4 or not lib.equal(a, c)), lib
    t, d = draw(torch, torch.Generator().manual_seed(1)), draw(dg, dg.Generator().manual_seed(1))
    assert tuple(t.shape) == d.shape and str(t.dtype) == "torch." + dg.backend.dtype_name(d.dtype)


def test_randperm_with_a_generator_is_a_permutation():
    p = dg.randperm(50, generator=dg.Generator().manual_seed(3))
    assert sorted(p.tolist()) == list(range(50)) and p.dtype == dg.int64


def test_generator_of_the_wrong_kind_is_refused():
    with pytest.raises(TypeError, match="Generator"):
        dg.rand(2, generator=torch.Generator())
