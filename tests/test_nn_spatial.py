"""Spatial ops against PyTorch on the same inputs: padding, resampling, pooling, N-d convolution,
im2col, pixel shuffle, channel dropout, and the shape checks of the normalisation layers.

Each table row is one lambda ``f(F, *inputs)`` run once with ``distgraph.nn.functional`` and once
with ``torch.nn.functional``: forward values, dtype and shape, and input gradients must agree.
"""
import warnings

import numpy as np
import pytest
import torch

import distgraph as dg
import distgraph.nn.functional as DF
import torch.nn.functional as TF
from distgraph.autograd import gradcheck
from dg_testing import to_numpy

RNG = np.random.default_rng(0)


def _arr(shape):
    if isinstance(shape, np.ndarray):
        return shape
    return RNG.standard_normal(shape)


def _outs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def compare(fn, *shapes, device="cpu", dtype=np.float64, atol=1e-6, grad=True):
    """Run ``fn`` on distgraph and torch with the same inputs; compare outputs and input gradients."""
    arrays = [_arr(s).astype(dtype) if _arr(s).dtype.kind == "f" else _arr(s) for s in shapes]
    xd = [dg.tensor(a, device=device, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    xt = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    yd, yt = _outs(fn(DF, *xd)), _outs(fn(TF, *xt))
    assert len(yd) == len(yt)
    for a, b in zip(yd, yt):
        assert tuple(a.shape) == tuple(b.shape), (a.shape, b.shape)
        assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1], (a.dtype, b.dtype)
        np.testing.assert_allclose(to_numpy(a), b.detach().numpy(), atol=atol, rtol=1e-5)
    if grad:
        y0d, y0t = yd[0], yt[0]
        w = RNG.standard_normal(tuple(y0t.shape))
        (y0d * dg.tensor(w.astype(dtype), device=device)).sum().backward()
        (y0t * torch.tensor(w.astype(dtype))).sum().backward()
        for a, b in zip(xd, xt):
            if b.requires_grad:
                np.testing.assert_allclose(to_numpy(a.grad), b.grad.numpy(), atol=atol * 10, rtol=1e-5)
    return yd


def raises_like(fn, *shapes):
    """distgraph raises the same exception type as torch."""
    arrays = [_arr(s) for s in shapes]
    with pytest.raises(Exception) as et, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(TF, *[torch.tensor(a) for a in arrays])
    with pytest.raises(et.type), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(DF, *[dg.tensor(a) for a in arrays])


# ------------------------------------------------------------------ padding
PAD = [
    (lambda F, x: F.pad(x, (1, 2)), (2, 3, 4)),
    (lambda F, x: F.pad(x, (1, -1, 2, 0), value=1.5), (2, 3, 4)),
    (lambda F, x: F.pad(x, (2, 1), mode="reflect"), (2, 3, 4)),
    (lambda F, x: F.pad(x, (-1, 2), mode="reflect"), (1, 5)),
    (lambda F, x: F.pad(x, (1, 2, 2, 1), mode="reflect"), (2, 3, 4, 5)),
    (lambda F, x: F.pad(x, (1, 1, 1, 2, 2, 1), mode="reflect"), (1, 2, 3, 4, 5)),
    (lambda F, x: F.pad(x, (3, 1), mode="replicate"), (2, 3, 4)),
    (lambda F, x: F.pad(x, (1, 2, 0, 3), mode="replicate"), (3, 4, 5)),
    (lambda F, x: F.pad(x, (1, 0, 2, 1, 1, 1), mode="replicate"), (2, 3, 3, 4)),
    (lambda F, x: F.pad(x, (2, 3), mode="circular"), (2, 3, 4)),
    (lambda F, x: F.pad(x, (1, 2, 3, 1), mode="circular"), (2, 3, 4, 5)),
    (lambda F, x: F.pad(x, (1, 1, 1, 0, 0, 2), mode="circular"), (1, 2, 3, 4, 5)),
    (lambda F, x: F.pad(x, (-1, 2, 1, -1), mode="circular"), (1, 2, 4, 5)),
]


@pytest.mark.parametrize("case", range(len(PAD)))
def test_pad(case, device):
    fn, shape = PAD[case]
    compare(fn, shape, device=device)


PAD_ERRORS = [
    (lambda F, x: F.pad(x, (4, 1), mode="reflect"), (2, 4)),
    (lambda F, x: F.pad(x, (1, 1), mode="reflect"), (5,)),
    (lambda F, x: F.pad(x, (5, 0), mode="circular"), (1, 4)),
    (lambda F, x: F.pad(x, (1, 1, 1), mode="constant"), (2, 4)),
    (lambda F, x: F.pad(x, (1, 1), mode="wrap"), (2, 4)),
]


@pytest.mark.parametrize("case", range(len(PAD_ERRORS)))
def test_pad_errors(case):
    raises_like(*PAD_ERRORS[case])


def test_pad_modules():
    x = RNG.standard_normal((1, 2, 4, 5, 6))
    for name, args, xs in [("ZeroPad2d", (1,), x[0]), ("ConstantPad1d", ((1, 2), 3.5), x[0, 0]),
                           ("ConstantPad3d", (1, 0.5), x), ("ReflectionPad1d", ((2, 1),), x[0, 0]),
                           ("ReflectionPad2d", (2,), x[0]), ("ReplicationPad1d", (2,), x[0, 0]),
                           ("ReplicationPad2d", ((1, 2, 0, 1),), x[0]), ("ReplicationPad3d", (1,), x),
                           ("CircularPad2d", (1,), x[0]), ("ZeroPad1d", ((1, 1),), x[0, 0]),
                           ("ZeroPad3d", (1,), x), ("ReflectionPad3d", (1,), x), ("CircularPad1d", (2,), x[0, 0])]:
        yd = getattr(dg.nn, name)(*args)(dg.tensor(xs))
        yt = getattr(torch.nn, name)(*args)(torch.tensor(xs))
        np.testing.assert_allclose(to_numpy(yd), yt.numpy(), err_msg=name)


def test_pad_gradcheck():
    x = dg.tensor(RNG.standard_normal((1, 2, 3, 4)), requires_grad=True)
    for mode in ("reflect", "replicate", "circular"):
        assert gradcheck(lambda t, m=mode: DF.pad(t, (2, 1, 1, 2), mode=m), (x,))


# -------------------------------------------------------------- resampling
INTERP = [
    (lambda F, x: F.interpolate(x, scale_factor=2), (2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=7), (2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=(3, 5)), (1, 2, 5, 4)),
    (lambda F, x: F.interpolate(x, scale_factor=(1.5, 0.6)), (1, 2, 5, 6)),
    (lambda F, x: F.interpolate(x, scale_factor=1.7, recompute_scale_factor=True), (1, 2, 5, 6)),
    (lambda F, x: F.interpolate(x, size=(3, 4, 5)), (1, 2, 2, 3, 4)),
    (lambda F, x: F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 2, 3, 2)),
    (lambda F, x: F.interpolate(x, size=7, mode="nearest-exact"), (2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=(3, 7), mode="nearest-exact"), (1, 2, 5, 4)),
    (lambda F, x: F.interpolate(x, size=9, mode="linear"), (2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=3, mode="linear", align_corners=True), (2, 3, 7)),
    (lambda F, x: F.interpolate(x, scale_factor=2.5, mode="linear"), (2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=(7, 5), mode="bilinear"), (2, 3, 4, 6)),
    (lambda F, x: F.interpolate(x, size=(7, 5), mode="bilinear", align_corners=True), (2, 3, 4, 6)),
    (lambda F, x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), (1, 2, 4, 6)),
    (lambda F, x: F.interpolate(x, size=(2, 3), mode="bilinear"), (1, 2, 5, 7)),
    (lambda F, x: F.interpolate(x, size=(7, 5), mode="bicubic"), (2, 3, 4, 6)),
    (lambda F, x: F.interpolate(x, size=(7, 5), mode="bicubic", align_corners=True), (2, 3, 4, 6)),
    (lambda F, x: F.interpolate(x, size=(3, 4, 5), mode="trilinear"), (1, 2, 2, 3, 4)),
    (lambda F, x: F.interpolate(x, size=(3, 2), mode="area"), (1, 2, 5, 7)),
    (lambda F, x: F.interpolate(x, size=1, mode="linear", align_corners=True), (1, 2, 5)),
]


@pytest.mark.parametrize("case", range(len(INTERP)))
def test_interpolate(case, device):
    fn, shape = INTERP[case]
    compare(fn, shape, device=device)


def test_interpolate_float32_dtype():
    compare(lambda F, x: F.interpolate(x, size=(5, 3), mode="bilinear"), (1, 2, 3, 4), dtype=np.float32, atol=1e-5)


INTERP_ERRORS = [
    (lambda F, x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 1, 4)),
    (lambda F, x: F.interpolate(x, scale_factor=2, size=3), (1, 1, 4)),
    (lambda F, x: F.interpolate(x), (1, 1, 4)),
    (lambda F, x: F.interpolate(x, scale_factor=2, align_corners=True), (1, 1, 4)),
    (lambda F, x: F.interpolate(x, size=(3, 3)), (1, 1, 4)),
    (lambda F, x: F.interpolate(x, size=3, mode="cubic"), (1, 1, 4)),
]


@pytest.mark.parametrize("case", range(len(INTERP_ERRORS)))
def test_interpolate_errors(case):
    raises_like(*INTERP_ERRORS[case])


def test_upsample_modules():
    x = RNG.standard_normal((1, 2, 3, 4))
    for name, kw in [("Upsample", dict(scale_factor=2, mode="bilinear")), ("Upsample", dict(size=(5, 7))),
                     ("UpsamplingNearest2d", dict(scale_factor=2)), ("UpsamplingBilinear2d", dict(size=(5, 6)))]:
        yd, yt = getattr(dg.nn, name)(**kw)(dg.tensor(x)), getattr(torch.nn, name)(**kw)(torch.tensor(x))
        np.testing.assert_allclose(to_numpy(yd), yt.numpy(), atol=1e-12, err_msg=name)


def test_interpolate_gradcheck():
    x = dg.tensor(RNG.standard_normal((1, 1, 3, 4)), requires_grad=True)
    for mode in ("bilinear", "bicubic", "nearest"):
        assert gradcheck(lambda t, m=mode: DF.interpolate(t, size=(5, 3), mode=m), (x,))


# ------------------------------------------------------------------ pooling
POOL = [
    (lambda F, x: F.max_pool1d(x, 3), (2, 3, 10)),
    (lambda F, x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True), (2, 3, 10)),
    (lambda F, x: F.max_pool1d(x, 2, return_indices=True), (3, 9)),
    (lambda F, x: F.max_pool2d(x, 2), (2, 3, 6, 6)),
    (lambda F, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True), (2, 3, 8, 7)),
    (lambda F, x: F.max_pool2d(x, (2, 3), (2, 1), (1, 1), dilation=(2, 1), return_indices=True), (1, 2, 7, 6)),
    (lambda F, x: F.max_pool2d(x, 2, ceil_mode=True, return_indices=True), (3, 5, 5)),
    (lambda F, x: F.max_pool2d(x, 3, 2, ceil_mode=True), (1, 1, 6, 6)),
    (lambda F, x: F.max_pool3d(x, 2), (1, 2, 4, 4, 4)),
    (lambda F, x: F.max_pool3d(x, 3, 2, 1, ceil_mode=True, return_indices=True), (1, 2, 5, 6, 4)),
    (lambda F, x: F.avg_pool1d(x, 3, 2, 1), (2, 3, 10)),
    (lambda F, x: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 10)),
    (lambda F, x: F.avg_pool2d(x, 2), (2, 3, 6, 6)),
    (lambda F, x: F.avg_pool2d(x, 3, 2, 1), (2, 3, 7, 7)),
    (lambda F, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), (2, 3, 8, 7)),
    (lambda F, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 7)),
    (lambda F, x: F.avg_pool2d(x, (2, 3), 2, (1, 1), divisor_override=4), (1, 2, 6, 7)),
    (lambda F, x: F.avg_pool2d(x, 2, ceil_mode=True), (3, 5, 5)),
    (lambda F, x: F.avg_pool3d(x, 2), (1, 2, 4, 4, 4)),
    (lambda F, x: F.avg_pool3d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 5, 6, 4)),
    (lambda F, x: F.avg_pool3d(x, 2, divisor_override=3), (1, 2, 4, 4, 4)),
    (lambda F, x: F.adaptive_avg_pool1d(x, 4), (2, 3, 10)),
    (lambda F, x: F.adaptive_avg_pool2d(x, (3, 2)), (2, 3, 7, 5)),
    (lambda F, x: F.adaptive_avg_pool2d(x, (None, 3)), (2, 3, 7, 5)),
    (lambda F, x: F.adaptive_avg_pool2d(x, 1), (2, 3, 7, 5)),
    (lambda F, x: F.adaptive_avg_pool3d(x, (2, 3, 1)), (1, 2, 5, 4, 3)),
    (lambda F, x: F.adaptive_max_pool1d(x, 4, return_indices=True), (2, 3, 10)),
    (lambda F, x: F.adaptive_max_pool2d(x, (3, 2), return_indices=True), (2, 3, 7, 5)),
    (lambda F, x: F.adaptive_max_pool2d(x, 4), (3, 9, 6)),
    (lambda F, x: F.adaptive_max_pool3d(x, (2, 3, 2), return_indices=True), (1, 2, 5, 4, 3)),
    (lambda F, x: F.lp_pool2d(x.abs() + 0.1, 2, 2), (1, 2, 6, 6)),
    (lambda F, x: F.lp_pool1d(x.abs() + 0.1, 3, 3, 2), (1, 2, 9)),
]


@pytest.mark.parametrize("case", range(len(POOL)))
def test_pool(case, device):
    fn, shape = POOL[case]
    compare(fn, shape, device=device)


def test_pool_float32_and_gradcheck():
    compare(lambda F, x: F.max_pool2d(x, 2, return_indices=True), (2, 2, 4, 4), dtype=np.float32, atol=1e-6)
    compare(lambda F, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), (2, 2, 5, 5), dtype=np.float32, atol=1e-6)
    x = dg.tensor(RNG.standard_normal((1, 2, 5, 5)), requires_grad=True)
    assert gradcheck(lambda t: DF.max_pool2d(t, 3, 2, 1, ceil_mode=True), (x,))
    assert gradcheck(lambda t: DF.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), (x,))
    assert gradcheck(lambda t: DF.adaptive_max_pool2d(t, (2, 3)), (x,))
    assert gradcheck(lambda t: DF.adaptive_avg_pool2d(t, (3, 2)), (x,))


POOL_ERRORS = [
    (lambda F, x: F.max_pool2d(x, 2, padding=2), (1, 1, 4, 4)),
    (lambda F, x: F.max_pool2d(x, 5), (1, 1, 4, 4)),
    (lambda F, x: F.max_pool2d(x, 2), (4, 4)),
    (lambda F, x: F.avg_pool1d(x, 2, padding=2), (1, 1, 4)),
    (lambda F, x: F.max_pool3d(x, 2), (1, 4, 4)),
]


@pytest.mark.parametrize("case", range(len(POOL_ERRORS)))
def test_pool_errors(case):
    raises_like(*POOL_ERRORS[case])


@pytest.mark.parametrize("nd,kw", [(1, dict(kernel_size=2)), (2, dict(kernel_size=2)),
                                   (2, dict(kernel_size=3, stride=2, padding=1)), (3, dict(kernel_size=2))])
def test_max_unpool(nd, kw, device):
    shape = (2, 3) + (6, 7, 5)[:nd]
    x = RNG.standard_normal(shape)
    name = f"max_pool{nd}d"
    yt, it = getattr(TF, name)(torch.tensor(x), return_indices=True, **kw)
    yd, id_ = getattr(DF, name)(dg.tensor(x, device=device), return_indices=True, **kw)
    np.testing.assert_array_equal(to_numpy(id_), it.numpy())
    size = shape[2:]
    ut = getattr(TF, f"max_unpool{nd}d")(yt.requires_grad_(), it, output_size=size, **kw)
    yd.requires_grad_()
    ud = getattr(DF, f"max_unpool{nd}d")(yd, id_, output_size=size, **kw)
    np.testing.assert_allclose(to_numpy(ud), ut.detach().numpy())
    w = RNG.standard_normal(tuple(ut.shape))
    (ut * torch.tensor(w)).sum().backward()
    (ud * dg.tensor(w, device=device)).sum().backward()
    np.testing.assert_allclose(to_numpy(yd.grad), yt.grad.numpy())
    if nd == 2:
        md = dg.nn.MaxUnpool2d(**kw)(yd.detach(), id_, output_size=size)
        mt = torch.nn.MaxUnpool2d(**kw)(yt.detach(), it, output_size=size)
        np.testing.assert_allclose(to_numpy(md), mt.numpy())


def test_max_unpool_default_size():
    x = RNG.standard_normal((1, 2, 4, 6))
    yt, it = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    yd, id_ = DF.max_pool2d(dg.tensor(x), 2, return_indices=True)
    np.testing.assert_allclose(to_numpy(DF.max_unpool2d(yd, id_, 2)), TF.max_unpool2d(yt, it, 2).numpy())
    x = RNG.standard_normal((1, 2, 9))
    yt, it = TF.max_pool1d(torch.tensor(x), 3, return_indices=True)
    yd, id_ = DF.max_pool1d(dg.tensor(x), 3, return_indices=True)
    np.testing.assert_allclose(to_numpy(dg.nn.MaxUnpool1d(3)(yd, id_)), torch.nn.MaxUnpool1d(3)(yt, it).numpy())


def test_pool_modules():
    x = RNG.standard_normal((2, 3, 7, 6, 5))
    for name, args, kw, xs in [
            ("MaxPool1d", (3,), dict(stride=2, ceil_mode=True), x[0, :, :, 0]),
            ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), x[:, :, 0]),
            ("MaxPool3d", (2,), dict(return_indices=True), x),
            ("AvgPool1d", (3,), dict(ceil_mode=True, count_include_pad=False, padding=1), x[0, :, :, 0]),
            ("AvgPool2d", (2,), dict(divisor_override=3), x[:, :, 0]),
            ("AvgPool3d", (2,), dict(stride=1), x),
            ("AdaptiveAvgPool1d", (4,), {}, x[0, :, :, 0]),
            ("AdaptiveAvgPool2d", ((2, 4),), {}, x[:, :, 0]),
            ("AdaptiveAvgPool3d", ((2, 3, 4),), {}, x),
            ("AdaptiveMaxPool1d", (4,), dict(return_indices=True), x[0, :, :, 0]),
            ("AdaptiveMaxPool2d", ((3, 4),), {}, x[:, :, 0]),
            ("AdaptiveMaxPool3d", (2,), {}, x),
            ("LPPool2d", (2, 2), {}, np.abs(x[:, :, 0]) + 0.1),
            ("LPPool1d", (1.5, 3), dict(stride=2), np.abs(x[0, :, :, 0]) + 0.1)]:
        md, mt = getattr(dg.nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
        for a, b in zip(_outs(md(dg.tensor(xs))), _outs(mt(torch.tensor(xs)))):
            np.testing.assert_allclose(to_numpy(a), b.numpy(), atol=1e-10, err_msg=name)
        assert repr(md).split("(")[0] == repr(mt).split("(")[0]


# ------------------------------------------------------------- convolution
CONV = [
    (lambda F, x, w: F.conv3d(x, w), (2, 4, 5, 6, 5), (3, 4, 2, 3, 2)),
    (lambda F, x, w: F.conv3d(x, w, stride=(1, 2, 2), padding=1), (2, 4, 5, 6, 5), (3, 4, 3, 3, 3)),
    (lambda F, x, w: F.conv3d(x, w, dilation=2, padding="same"), (1, 4, 5, 6, 5), (4, 4, 3, 2, 3)),
    (lambda F, x, w: F.conv3d(x, w, groups=2, padding="valid"), (1, 4, 5, 6, 5), (4, 2, 2, 2, 2)),
    (lambda F, x, w: F.conv3d(x, w, padding=(0, 1, 2)), (4, 4, 4, 4), (2, 4, 2, 2, 2)),
    (lambda F, x, w: F.conv2d(x, w, padding="same"), (2, 3, 6, 5), (4, 3, 2, 3)),
    (lambda F, x, w: F.conv2d(x, w, padding=1), (3, 6, 5), (4, 3, 3, 3)),
    (lambda F, x, w: F.conv1d(x, w, padding="same", dilation=2), (2, 3, 9), (4, 3, 4)),
    (lambda F, x, w: F.conv1d(x, w, stride=2), (3, 9), (4, 3, 3)),
    (lambda F, x, w: F.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1), (2, 3, 6), (3, 2, 3)),
    (lambda F, x, w: F.conv_transpose1d(x, w, groups=3, dilation=2), (2, 3, 6), (3, 2, 3)),
    (lambda F, x, w: F.conv_transpose3d(x, w, stride=2, padding=1), (1, 4, 3, 2, 3), (4, 2, 3, 2, 3)),
    (lambda F, x, w: F.conv_transpose3d(x, w, stride=(1, 2, 1), groups=2, output_padding=(0, 1, 0)),
     (1, 4, 3, 2, 3), (4, 2, 2, 2, 2)),
    (lambda F, x, w: F.conv_transpose2d(x, w, stride=2), (3, 4, 3), (3, 2, 3, 3)),
]


@pytest.mark.parametrize("case", range(len(CONV)))
def test_conv(case, device):
    fn, *shapes = CONV[case]
    compare(fn, *shapes, device=device, atol=1e-9)


def test_conv3d_bias_float32_gradcheck():
    compare(lambda F, x, w, b: F.conv3d(x, w, b, padding=1), (1, 2, 3, 4, 3), (3, 2, 2, 2, 2), (3,),
            dtype=np.float32, atol=1e-5)
    x = dg.tensor(RNG.standard_normal((1, 2, 3, 3, 3)), requires_grad=True)
    w = dg.tensor(RNG.standard_normal((2, 2, 2, 2, 2)), requires_grad=True)
    assert gradcheck(lambda a, b: DF.conv3d(a, b, stride=2, padding=1), (x, w))
    assert gradcheck(lambda a, b: DF.conv_transpose3d(a, b, stride=2), (x, w))


CONV_ERRORS = [
    (lambda F, x, w: F.conv3d(x, w), (1, 3, 4, 4, 4), (2, 4, 2, 2, 2)),
    (lambda F, x, w: F.conv3d(x, w), (1, 4, 4, 4), (2, 4, 2, 2, 2)),
    (lambda F, x, w: F.conv3d(x, w, stride=2, padding="same"), (1, 4, 4, 4, 4), (2, 4, 2, 2, 2)),
    (lambda F, x, w: F.conv2d(x, w), (1, 1, 5, 5), (2, 3, 3, 3)),
    (lambda F, x, w: F.conv2d(x, w), (1, 3, 2, 2), (2, 3, 3, 3)),
    (lambda F, x, w: F.conv1d(x, w), (1, 2, 5), (2, 3, 3)),
    (lambda F, x, w: F.linear(x, w), (2, 5), (3, 4)),
]


@pytest.mark.parametrize("case", range(len(CONV_ERRORS)))
def test_conv_errors(case):
    raises_like(*CONV_ERRORS[case])


@pytest.mark.parametrize("name,nd,kw", [
    ("Conv1d", 1, dict(padding=2, padding_mode="reflect")), ("Conv1d", 1, dict(padding="same", padding_mode="circular")),
    ("Conv2d", 2, dict(padding=1, padding_mode="replicate")), ("Conv2d", 2, dict(padding=(1, 2), padding_mode="circular")),
    ("Conv2d", 2, dict(padding="same", padding_mode="reflect", dilation=2)),
    ("Conv3d", 3, dict(padding=1, padding_mode="reflect")), ("Conv3d", 3, dict(stride=2, groups=2, bias=False)),
    ("Conv3d", 3, dict(padding="same", padding_mode="replicate")),
    ("ConvTranspose1d", 1, dict(stride=2, padding=1)), ("ConvTranspose3d", 3, dict(stride=2, output_padding=1)),
    ("ConvTranspose2d", 2, dict(stride=2, groups=2, dilation=2)),
])
def test_conv_modules(name, nd, kw):
    md = getattr(dg.nn, name)(4, 6, 3, **kw).double()
    mt = getattr(torch.nn, name)(4, 6, 3, **kw).double()
    for pd, pt in zip(md.parameters(), mt.parameters()):
        pd.array[...] = pt.detach().numpy()
    x = RNG.standard_normal((2, 4) + (7, 6, 5)[:nd])
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yd, yt = md(xd), mt(xt)
    np.testing.assert_allclose(to_numpy(yd), yt.detach().numpy(), atol=1e-9)
    yd.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(to_numpy(xd.grad), xt.grad.numpy(), atol=1e-9)
    for pd, pt in zip(md.parameters(), mt.parameters()):
        np.testing.assert_allclose(to_numpy(pd.grad), pt.grad.numpy(), atol=1e-9)
    assert [k for k, _ in md.named_parameters()] == [k for k, _ in mt.named_parameters()]


def test_conv_module_errors():
    for kw in (dict(padding="same", stride=2), dict(padding_mode="mirror"), dict(padding="full")):
        with pytest.raises(ValueError):
            torch.nn.Conv2d(4, 6, 3, **kw)
        with pytest.raises(ValueError):
            dg.nn.Conv2d(4, 6, 3, **kw)
    x = RNG.standard_normal((1, 3, 5, 5, 5)).astype(np.float32)
    with pytest.raises(RuntimeError):
        torch.nn.Conv3d(4, 6, 3)(torch.tensor(x))
    with pytest.raises(RuntimeError):
        dg.nn.Conv3d(4, 6, 3)(dg.tensor(x))


def test_conv_transpose_output_size():
    md, mt = dg.nn.ConvTranspose1d(2, 3, 3, stride=2).double(), torch.nn.ConvTranspose1d(2, 3, 3, stride=2).double()
    for pd, pt in zip(md.parameters(), mt.parameters()):
        pd.array[...] = pt.detach().numpy()
    x = RNG.standard_normal((1, 2, 4))
    np.testing.assert_allclose(to_numpy(md(dg.tensor(x), output_size=[10])),
                               mt(torch.tensor(x), output_size=[10]).detach().numpy(), atol=1e-12)
    md, mt = dg.nn.ConvTranspose2d(2, 3, 3, stride=2).double(), torch.nn.ConvTranspose2d(2, 3, 3, stride=2).double()
    for pd, pt in zip(md.parameters(), mt.parameters()):
        pd.array[...] = pt.detach().numpy()
    x = RNG.standard_normal((1, 2, 4, 3))
    np.testing.assert_allclose(to_numpy(md(dg.tensor(x), output_size=(10, 8))),
                               mt(torch.tensor(x), output_size=(10, 8)).detach().numpy(), atol=1e-12)
    with pytest.raises(ValueError):
        md(dg.tensor(x), output_size=(12, 8))
    with pytest.raises(ValueError):
        mt(torch.tensor(x), output_size=(12, 8))


# -------------------------------------------------------- im2col, shuffles
MISC = [
    (lambda F, x: F.unfold(x, 2), (2, 3, 4, 5)),
    (lambda F, x: F.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (2, 3, 5, 6)),
    (lambda F, x: F.fold(x, (4, 5), 2), (2, 12, 12)),
    (lambda F, x: F.fold(x, (5, 6), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (2, 18, 12)),
    (lambda F, x: F.fold(x, (3, 3), 2), (8, 4)),
    (lambda F, x: F.pixel_shuffle(x, 2), (2, 8, 3, 4)),
    (lambda F, x: F.pixel_shuffle(x, 3), (9, 2, 2)),
    (lambda F, x: F.pixel_unshuffle(x, 2), (2, 2, 4, 6)),
    (lambda F, x: F.pixel_unshuffle(x, 3), (2, 1, 2, 6, 3)),
]


@pytest.mark.parametrize("case", range(len(MISC)))
def test_fold_shuffle(case, device):
    fn, shape = MISC[case]
    compare(fn, shape, device=device)


def test_fold_shuffle_errors_and_modules():
    raises_like(lambda F, x: F.pixel_shuffle(x, 2), (1, 3, 2, 2))
    raises_like(lambda F, x: F.pixel_unshuffle(x, 2), (1, 3, 3, 2))
    raises_like(lambda F, x: F.fold(x, (4, 5), 2), (2, 12, 11))
    x = RNG.standard_normal((2, 8, 4, 6))
    for name, args in [("PixelShuffle", (2,)), ("PixelUnshuffle", (2,)), ("Unfold", (3,))]:
        np.testing.assert_allclose(to_numpy(getattr(dg.nn, name)(*args)(dg.tensor(x))),
                                   getattr(torch.nn, name)(*args)(torch.tensor(x)).numpy(), err_msg=name)
    c = RNG.standard_normal((2, 8, 12))
    np.testing.assert_allclose(to_numpy(dg.nn.Fold((4, 5), 2)(dg.tensor(c))),
                               torch.nn.Fold((4, 5), 2)(torch.tensor(c)).numpy())


# ---------------------------------------------------------------- dropout
@pytest.mark.parametrize("name,shape", [("Dropout1d", (40, 50, 6)), ("Dropout2d", (40, 50, 3, 2)),
                                        ("Dropout3d", (40, 50, 2, 2, 2)), ("Dropout1d", (60, 7))])
def test_channel_dropout(name, shape, device):
    dg.manual_seed(0)
    m = getattr(dg.nn, name)(0.3)
    x = dg.ones(*shape, device=device)
    y = to_numpy(m(x))
    lead = 2 if len(shape) == int(name[7]) + 2 else 1
    planes = y.reshape(shape[:lead] + (-1,))
    assert np.all((planes == 0).all(-1) | np.isclose(planes, 1 / 0.7).all(-1))      # whole channels
    frac = (planes[..., 0] == 0).mean()
    n = planes[..., 0].size                     # channels drawn: within 4 binomial standard deviations
    assert abs(frac - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n), (frac, n)
    m.eval()
    np.testing.assert_array_equal(to_numpy(m(x)), to_numpy(x))
    xg = dg.ones(*shape, device=device, requires_grad=True)
    m.train()
    out = m(xg)
    out.sum().backward()
    np.testing.assert_allclose(to_numpy(xg.grad), to_numpy(out))


def test_dropout_edge_cases():
    x = dg.ones(3, 4, 5)
    assert (to_numpy(DF.dropout2d(dg.ones(2, 3, 4, 5), 1.0)) == 0).all()
    np.testing.assert_array_equal(to_numpy(DF.dropout1d(x, 0.0)), to_numpy(x))
    with pytest.raises(ValueError):
        dg.nn.Dropout2d(1.5)
    with pytest.raises(ValueError):
        torch.nn.Dropout2d(1.5)
    raises_like(lambda F, t: F.dropout1d(t, 0.5), (5,))
    y = to_numpy(DF.dropout2d(dg.ones(30, 40, 6), 0.5))         # 3-d input: (N, C, L) channels, as torch
    assert np.all((y == 0).all(-1) | (y == 2).all(-1))


def test_alpha_dropout_statistics():
    x = dg.tensor(RNG.standard_normal((200, 500)).astype(np.float32))
    y = to_numpy(DF.alpha_dropout(x, 0.2, training=True))
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.03
    values, counts = np.unique(y, return_counts=True)           # dropped units all take one value
    assert abs(counts.max() / y.size - 0.2) < 0.01
    yt = torch.nn.functional.alpha_dropout(torch.tensor(to_numpy(x)), 0.2, training=True).numpy()
    tv, tc = np.unique(yt, return_counts=True)
    np.testing.assert_allclose(values[counts.argmax()], tv[tc.argmax()], rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(dg.nn.AlphaDropout(0.2).eval()(x)), to_numpy(x))
    z = to_numpy(dg.nn.FeatureAlphaDropout(0.5)(dg.ones(20, 30, 4)))
    assert np.all(np.isclose(z, z[..., :1]).all(-1))


# ---------------------------------------------------------- normalisation
def test_norm_channel_checks():
    cases = [
        (lambda nn: nn.BatchNorm2d(64), (2, 1, 3, 3)),
        (lambda nn: nn.BatchNorm2d(64).eval(), (2, 1, 3, 3)),
        (lambda nn: nn.BatchNorm2d(64), (2, 64, 3)),
        (lambda nn: nn.BatchNorm1d(4), (2, 5)),
        (lambda nn: nn.BatchNorm1d(4), (2, 4, 3, 3)),
        (lambda nn: nn.BatchNorm3d(4), (2, 4, 3, 3)),
        (lambda nn: nn.BatchNorm3d(4, affine=False), (2, 3, 2, 3, 3)),
        (lambda nn: nn.LayerNorm(10), (2, 5)),
        (lambda nn: nn.GroupNorm(2, 4), (2, 6, 3)),
        (lambda nn: nn.GroupNorm(2, 4), (2, 5, 3)),
        (lambda nn: nn.InstanceNorm2d(4, affine=True), (2, 5, 3, 3)),
        (lambda nn: nn.InstanceNorm2d(4), (2, 4, 3, 3, 3)),
        (lambda nn: nn.Linear(4, 3), (2, 5)),
        (lambda nn: nn.Conv2d(3, 4, 3), (1, 1, 5, 5)),
    ]
    for make, shape in cases:
        x = RNG.standard_normal(shape).astype(np.float32)
        with pytest.raises(Exception) as et:
            make(torch.nn)(torch.tensor(x))
        with pytest.raises(et.type):
            make(dg.nn)(dg.tensor(x))
    with pytest.raises(ValueError):
        torch.nn.GroupNorm(3, 4)
    with pytest.raises(ValueError):
        dg.nn.GroupNorm(3, 4)


@pytest.mark.parametrize("name,args,kw,shape", [
    ("BatchNorm3d", (3,), {}, (2, 3, 2, 3, 2)),
    ("InstanceNorm1d", (3,), {}, (2, 3, 7)),
    ("InstanceNorm1d", (3,), dict(affine=True), (3, 7)),
    ("InstanceNorm2d", (3,), dict(affine=True, track_running_stats=True), (2, 3, 4, 5)),
    ("InstanceNorm3d", (3,), {}, (2, 3, 2, 3, 4)),
    ("LocalResponseNorm", (3,), {}, (2, 5, 4, 3)),
    ("LocalResponseNorm", (2,), dict(alpha=0.1, beta=0.5, k=2.0), (2, 6, 7)),
])
def test_norm_layers(name, args, kw, shape):
    md, mt = getattr(dg.nn, name)(*args, **kw).double(), getattr(torch.nn, name)(*args, **kw).double()
    x = RNG.standard_normal(shape)
    for train in (True, False):
        md.train(train), mt.train(train)
        xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        yd, yt = md(xd), mt(xt)
        np.testing.assert_allclose(to_numpy(yd), yt.detach().numpy(), atol=1e-9, err_msg=name)
        w = RNG.standard_normal(shape)
        (yd * dg.tensor(w)).sum().backward()
        (yt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(to_numpy(xd.grad), xt.grad.numpy(), atol=1e-8, err_msg=name)
    for (k, bd), (_, bt) in zip(md.named_buffers(), mt.named_buffers()):
        np.testing.assert_allclose(to_numpy(bd), bt.numpy(), atol=1e-9, err_msg=k)
    assert sorted(md.state_dict()) == sorted(mt.state_dict())
