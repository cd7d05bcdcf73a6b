"""dg.onnx.export: exported models pass onnx.checker and give distgraph's outputs in onnxruntime.

Every model is exported with a dynamic batch axis (the LSTM and the unmasked transformer with a
dynamic sequence axis too), then run in onnxruntime at the traced shapes and at other ones; the
reference is distgraph's own eval-mode output on the same inputs (float32, rtol = atol = 1e-5).
"""
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
from distgraph import nn
from distgraph.onnx import OnnxExporterError, TracingError, TrainingMode, UnsupportedOperatorError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ models
def mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(32, 4))


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def resnet18():
    """The example's ResNet-18 (CIFAR stem, 4 stages of 2 BasicBlocks), narrow for speed."""
    spec = importlib.util.spec_from_file_location("train_resnet_for_onnx", ROOT / "examples" / "train_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.resnet18(width=4)
    rng = np.random.default_rng(1)
    for m in model.modules():      # non-trivial running statistics, so that eval BatchNorm is tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.array[...] = rng.normal(0, 0.1, m.running_mean.shape)
            m.running_var.array[...] = rng.uniform(0.5, 1.5, m.running_var.shape)
    return model


class LSTMLanguageModel(nn.Module):
    def __init__(self, batch_first, vocab=40, width=16, hidden=24):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, hidden, num_layers=2, batch_first=batch_first)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, h0=None, c0=None):
        y, (h, c) = self.lstm(self.embed(tokens), None if h0 is None else (h0, c0))
        return self.head(y), h, c


class Recurrent(nn.Module):
    def __init__(self, cls, **options):
        super().__init__()
        self.rnn = cls(6, 5, num_layers=2, **options)

    def forward(self, x):
        return self.rnn(x)


def encoder(norm_first, activation, batch_first=False):
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1, activation=activation,
                                       norm_first=norm_first, batch_first=batch_first)
    return nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16))


class MaskedEncoder(nn.Module):
    """A fixed float (causal) mask or a bool key-padding mask that is a model input."""

    def __init__(self, model, causal):
        super().__init__()
        self.model, self.causal = model, causal

    def forward(self, src, key_padding_mask=None):
        mask = nn.Transformer.generate_square_subsequent_mask(src.shape[0]) if self.causal else None
        return self.model(src, mask=mask, src_key_padding_mask=key_padding_mask)


# ------------------------------------------------------------------ helpers
def tokens(*shape, vocab=40, seed=0):
    return dg.tensor(np.random.default_rng(seed).integers(0, vocab, shape))


def randn(*shape, seed=0):
    return dg.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def outputs(model, args):
    """distgraph's eval-mode outputs (what export traces by default)."""
    model.eval()
    with dg.no_grad():
        out = model(*args)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def legacy_export(model, args, **options):
    """The ModelProto that ``export(..., dynamo=False)`` writes (it returns None, as torch)."""
    f = io.BytesIO()
    assert dg.onnx.export(model, args, f, dynamo=False, **options) is None
    return onnx.load_from_string(f.getvalue())


def run_onnx(proto, args):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    return sess.run(None, feeds)


def assert_same(proto, model, args, what):
    got, want = run_onnx(proto, args), outputs(model, args)
    assert len(got) == len(want), f"{what}: onnxruntime gave {len(got)} outputs, distgraph {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{what}, output {i}: onnxruntime shape {g.shape}, distgraph {w.shape}"
        err = np.abs(g - w).max() if g.size else 0.0
        assert np.allclose(g, w, **TOL), f"{what}, output {i}: max |onnxruntime - distgraph| = {err}"


def padding_mask(n, s, seed):
    m = np.zeros((n, s), bool)
    m[np.arange(n), s - 1 - np.arange(n) % 2] = True      # mask one of the last keys of each sequence
    return dg.tensor(m)


# name: (build, traced args, other-shape args, input_names, dynamic_axes)
CASES = {
    "mlp": (mlp, [randn(3, 8)], [randn(7, 8, seed=1)], ["x"], {"x": {0: "batch"}, "output": {0: "batch"}}),
    "lenet": (lenet, [randn(2, 1, 28, 28)], [randn(5, 1, 28, 28, seed=1)], ["image"], {"image": [0]}),
    "resnet18": (resnet18, [randn(2, 3, 32, 32)], [randn(3, 3, 32, 32, seed=1)], ["image"], {"image": [0]}),
    "lstm_seq_first": (lambda: LSTMLanguageModel(False), [tokens(6, 3)], [tokens(9, 5, seed=1)], ["tokens"],
                       {"tokens": {0: "time", 1: "batch"}}),
    "lstm_batch_first": (lambda: LSTMLanguageModel(True), [tokens(3, 6)], [tokens(4, 11, seed=1)], ["tokens"],
                         {"tokens": {0: "batch", 1: "time"}}),
    "lstm_given_state": (lambda: LSTMLanguageModel(True), [tokens(3, 6), randn(2, 3, 24), randn(2, 3, 24, seed=2)],
                         [tokens(5, 4, seed=1), randn(2, 5, 24, seed=3), randn(2, 5, 24, seed=4)],
                         ["tokens", "h0", "c0"], {"tokens": [0, 1], "h0": [1], "c0": [1]}),
    "gru_bidirectional": (lambda: Recurrent(nn.GRU, bidirectional=True), [randn(4, 3, 6)], [randn(7, 2, 6, seed=1)],
                          ["x"], {"x": [0, 1]}),
    "rnn_relu_batch_first": (lambda: Recurrent(nn.RNN, nonlinearity="relu", batch_first=True), [randn(3, 4, 6)],
                             [randn(2, 9, 6, seed=1)], ["x"], {"x": [0, 1]}),
    "encoder_post_norm_relu": (lambda: encoder(False, "relu"), [randn(5, 2, 16)], [randn(8, 3, 16, seed=1)],
                               ["src"], {"src": [0, 1]}),
    "encoder_pre_norm_gelu": (lambda: encoder(True, "gelu"), [randn(5, 2, 16)], [randn(7, 4, 16, seed=1)],
                              ["src"], {"src": [0, 1]}),
    "encoder_batch_first": (lambda: encoder(True, "relu", batch_first=True), [randn(2, 5, 16)],
                            [randn(4, 6, 16, seed=1)], ["src"], {"src": [0, 1]}),
    "encoder_causal_mask_pre_norm": (lambda: MaskedEncoder(encoder(True, "relu"), True), [randn(5, 2, 16)],
                                     [randn(5, 4, 16, seed=1)], ["src"], {"src": [1]}),
    "encoder_causal_mask_gelu": (lambda: MaskedEncoder(encoder(False, "gelu"), True), [randn(5, 2, 16)],
                                 [randn(5, 3, 16, seed=1)], ["src"], {"src": [1]}),
    "encoder_padding_mask": (lambda: MaskedEncoder(encoder(False, "relu"), False),
                             [randn(6, 2, 16), padding_mask(2, 6, 0)], [randn(6, 5, 16, seed=1), padding_mask(5, 6, 1)],
                             ["src", "key_padding_mask"], {"src": [1], "key_padding_mask": [0]}),
}


class Fn(nn.Module):
    """A model whose forward is ``f(*inputs)`` (an op under test), with an optional submodule."""

    def __init__(self, f, sub=None):
        super().__init__()
        self.f, self.sub = f, sub

    def forward(self, *inputs):
        return self.f(self, *inputs)


def ints(values):
    return dg.tensor(np.asarray(values, dtype=np.int64))


def bools(*shape, seed=0):
    return dg.tensor(np.random.default_rng(seed).random(shape) < 0.5)


F = nn.functional
_b = {"x": [0]}              # the usual dynamic batch axis
# name: (build, traced args, other-size args, input_names, dynamic_axes), as CASES
OP_CASES = {
    "avg_pool2d_module": (lambda: Fn(lambda m, x: m.sub(x), nn.AvgPool2d(3, 2)), [randn(2, 3, 9, 9)],
                          [randn(4, 3, 9, 9, seed=1)], ["x"], _b),
    "avg_pool2d_pad_exclude": (lambda: Fn(lambda m, x: m.sub(x), nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
                               [randn(2, 3, 8, 8)], [randn(3, 3, 8, 8, seed=1)], ["x"], _b),
    "avg_pool2d_ceil": (lambda: Fn(lambda m, x: m.sub(x), nn.AvgPool2d(3, 2, 1, ceil_mode=True)), [randn(2, 3, 8, 8)],
                        [randn(3, 3, 8, 8, seed=1)], ["x"], _b),
    "avg_pool2d_divisor": (lambda: Fn(lambda m, x: m.sub(x), nn.AvgPool2d(2, padding=1, divisor_override=3)),
                           [randn(2, 3, 6, 6)], [randn(3, 3, 6, 6, seed=1)], ["x"], _b),
    "avg_pool1d_module": (lambda: Fn(lambda m, x: m.sub(x), nn.AvgPool1d(3, 2, 1, ceil_mode=True)), [randn(2, 3, 10)],
                          [randn(5, 3, 10, seed=1)], ["x"], _b),
    "avg_pool2d_functional": (lambda: Fn(lambda m, x: F.avg_pool2d(x, 3, 2, 1, True, False)), [randn(2, 3, 8, 8)],
                              [randn(3, 3, 8, 8, seed=1)], ["x"], _b),
    "adaptive_avg_pool2d_2x3": (lambda: Fn(lambda m, x: m.sub(x), nn.AdaptiveAvgPool2d((2, 3))), [randn(2, 3, 7, 9)],
                                [randn(3, 3, 7, 9, seed=1)], ["x"], _b),
    "gather_index_input": (lambda: Fn(lambda m, x, i: x.gather(1, i)), [randn(2, 5), ints([[0, 4, 4], [1, 0, 2]])],
                           [randn(3, 5, seed=1), ints([[3, 3, 0], [2, 1, 4], [0, 0, 1]])], ["x", "i"],
                           {"x": [0], "i": [0]}),
    "index_select_index_input": (lambda: Fn(lambda m, x, i: x.index_select(2, i)), [randn(2, 3, 5), ints([4, 0, 2, 0])],
                                 [randn(4, 3, 5, seed=1), ints([1, 3, 3, 4])], ["x", "i"], _b),
    "int_tensor_index": (lambda: Fn(lambda m, x, i: (x[:, i], x[..., [0, -1]])),
                         [randn(2, 5, 3), ints([[1, 4], [0, 0]])], [randn(3, 5, 3, seed=1), ints([[2, 3], [4, 1]])],
                         ["x", "i"], _b),
    "cumsum": (lambda: Fn(lambda m, x: x.cumsum(1) + x.cumsum(-1)), [randn(2, 4, 3)], [randn(5, 4, 3, seed=1)],
               ["x"], _b),
    "cumsum_int": (lambda: Fn(lambda m, x: x.cumsum(0)), [tokens(4, 3)], [tokens(7, 3, seed=1)], ["x"], _b),
    "topk_values_indices": (lambda: Fn(lambda m, x: tuple(x.topk(3, 1))), [randn(2, 6)], [randn(4, 6, seed=1)],
                            ["x"], _b),
    "topk_smallest_indices_reused": (lambda: Fn(lambda m, x: x.gather(-1, x.topk(2, -1, largest=False).indices) * 2),
                                     [randn(2, 3, 5)], [randn(3, 3, 5, seed=1)], ["x"], _b),
    "sort_dynamic_dim": (lambda: Fn(lambda m, x: tuple(x.sort(1, descending=True))), [randn(2, 5)],
                         [randn(3, 8, seed=1)], ["x"], {"x": [0, 1]}),
    "argsort": (lambda: Fn(lambda m, x: x.argsort(0)), [randn(4, 3)], [randn(4, 6, seed=1)], ["x"], {"x": [1]}),
    "masked_fill_mask_input": (lambda: Fn(lambda m, x, mask: x.masked_fill(mask.unsqueeze(1), -1e9).softmax(-1)),
                               [randn(2, 3, 4), bools(2, 4)], [randn(5, 3, 4, seed=1), bools(5, 4, seed=1)],
                               ["x", "mask"], {"x": [0], "mask": [0]}),
}


@pytest.mark.parametrize("name", list(CASES) + list(OP_CASES))
def test_exported_model_matches_distgraph_in_onnxruntime(name):
    build, args, other, input_names, axes = CASES.get(name) or OP_CASES[name]
    dg.manual_seed(0)
    model = build()
    f = io.BytesIO()
    program = dg.onnx.export(model, tuple(args), f, input_names=input_names, dynamic_axes=axes)
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)
    assert f.getvalue() == proto.SerializeToString(), "the bytes written to f are not the returned model"
    assert model.training, "export should restore the training mode the model was in"
    model.eval()
    assert_same(proto, model, args, f"{name} at the traced shapes")
    assert_same(proto, model, other, f"{name} at other sizes of the dynamic axes {axes}")
    for o, w in zip(proto.graph.output, outputs(model, other)):   # declared output dims hold at other sizes
        declared = [d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
        assert all(d in (None, n) for d, n in zip(declared, w.shape)), \
            f"{name}: output {o.name} declares shape {declared}, but has shape {w.shape} at other input sizes"


# ------------------------------------------------------------------ the options
def test_parameters_are_initializers_named_as_in_state_dict_and_names_are_used():
    dg.manual_seed(0)
    model = mlp()
    proto = dg.onnx.export(model, randn(2, 8), input_names=["features"], output_names=["logits"]).model_proto
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for key, p in model.state_dict().items():
        assert key in inits, f"parameter {key} missing from the initializers {sorted(inits)}"
        np.testing.assert_array_equal(inits[key], p.numpy())
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 8], f"without dynamic_axes the input shape is the traced one, got {dims}"


def test_default_names_follow_forward_and_list_dynamic_axes_get_torch_names():
    dg.manual_seed(0)
    proto = dg.onnx.export(LSTMLanguageModel(True), (tokens(2, 5),), dynamic_axes={"tokens": [0, 1]}).model_proto
    assert [i.name for i in proto.graph.input] == ["tokens"]
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1", "output_2"]
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["tokens_dynamic_axes_1", "tokens_dynamic_axes_2"]


def test_export_params_false_and_keep_initializers_as_inputs():
    """TorchScript's meaning (dynamo=False): parameters become graph inputs; see also
    test_dynamo_export_params_and_keep_initializers_shape_only_the_file."""
    dg.manual_seed(0)
    model, x = mlp(), randn(2, 8)
    keys = list(model.state_dict())
    proto = legacy_export(model, x, export_params=False)
    assert not proto.graph.initializer, [t.name for t in proto.graph.initializer]
    assert [i.name for i in proto.graph.input] == ["input"] + keys
    weights = [p.numpy() for p in model.state_dict().values()]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, dict(zip(["input"] + keys, [x.numpy()] + weights)))[0]
    np.testing.assert_allclose(got, outputs(model, [x])[0], **TOL)
    proto = legacy_export(model, x, keep_initializers_as_inputs=True)
    assert [i.name for i in proto.graph.input] == ["input"] + keys
    assert_same(proto, model, [x], "keep_initializers_as_inputs=True")


def test_constant_folding_computes_batchnorm_statistics_at_export():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model[1].running_var.array[...] = 2.0
    x = randn(2, 3, 8, 8)
    folded = dg.onnx.export(model, x).model_proto
    plain = dg.onnx.export(model, x, do_constant_folding=False).model_proto
    assert "1.running_var" not in {t.name for t in folded.graph.initializer}
    assert "1.running_var" in {t.name for t in plain.graph.initializer}
    assert len(folded.graph.node) < len(plain.graph.node)
    for proto in (folded, plain):
        onnx.checker.check_model(proto, full_check=True)
        assert_same(proto, model, [x], "BatchNorm")


@pytest.mark.parametrize("opset", [14, 17, 18, 20])
def test_opset_version_is_honoured(opset):
    dg.manual_seed(0)
    model = encoder(True, "gelu")
    proto = dg.onnx.export(model, randn(4, 2, 16), opset_version=opset).model_proto
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    onnx.checker.check_model(proto, full_check=True)
    assert_same(proto, model, [randn(4, 2, 16)], f"opset {opset}")


def test_default_opset_and_bad_opsets():
    proto = dg.onnx.export(mlp(), randn(2, 8)).model_proto
    assert proto.opset_import[0].version == 18
    for bad in (13, onnx.defs.onnx_opset_version() + 1):
        with pytest.raises(OnnxExporterError, match=f"expected opset_version from 14 to .*got {bad}"):
            dg.onnx.export(mlp(), randn(2, 8), opset_version=bad)


def test_writes_the_same_model_to_a_path_and_to_bytesio(tmp_path):
    dg.manual_seed(0)
    model, x = lenet(), randn(1, 1, 28, 28)
    buf = io.BytesIO()
    dg.onnx.export(model, (x,), buf, dynamo=False)
    dg.onnx.export(model, (x,), tmp_path / "lenet.onnx", dynamo=False)
    dg.onnx.export(model, (x,), str(tmp_path / "lenet2.onnx"), dynamo=False)
    assert (tmp_path / "lenet.onnx").read_bytes() == buf.getvalue() == (tmp_path / "lenet2.onnx").read_bytes()
    assert_same(onnx.load(str(tmp_path / "lenet.onnx")), model, [x], "loaded from the file")


def test_exports_in_eval_mode_and_restores_training_mode():
    dg.manual_seed(0)
    model, x = mlp(), randn(4, 8)
    model.train()
    proto = dg.onnx.export(model, x).model_proto
    assert model.training and all(m.training for m in model.modules()), "the training flags were not restored"
    model.eval()
    assert_same(proto, model, [x], "a model exported while training (dropout must be off)")
    with pytest.raises(OnnxExporterError, match="TRAINING is not supported"):
        dg.onnx.export(model, x, training=TrainingMode.TRAINING)


def test_inplace_relu_is_followed():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))
    x = randn(3, 6)
    assert_same(dg.onnx.export(model, x).model_proto, model, [x], "ReLU(inplace=True)")


# ------------------------------------------------------------------ errors
class CumprodHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x):
        return self.body(x).cumprod(1)


def test_unsupported_op_raises_naming_the_op_and_where():
    with pytest.raises(UnsupportedOperatorError, match=r"unsupported operator 'Cumprod'") as e:
        dg.onnx.export(CumprodHead(), randn(2, 4))
    assert e.value.name == "Cumprod"
    assert "test_onnx.py" in e.value.where and "forward" in e.value.where, e.value.where


class AdvancedIndex(nn.Module):
    def forward(self, x):
        return nn.Sequential(nn.Identity())(x)[[0, 1], [0, 2]]


def test_unsupported_form_of_a_supported_op_says_why():
    with pytest.raises(UnsupportedOperatorError, match="GetItem.*several tensors"):
        dg.onnx.export(AdvancedIndex(), randn(2, 4))


@pytest.mark.parametrize("pool, size, match", [
    (nn.AvgPool2d(2, 3, 1, ceil_mode=True), 8, "last window starts in the right padding"),
    (nn.AvgPool2d(2, ceil_mode=True, divisor_override=3), 7, "divisor_override with ceil_mode"),
])
def test_avg_pool_forms_onnx_cannot_express_are_refused(pool, size, match):
    with pytest.raises(UnsupportedOperatorError, match=f"AvgPool2d.*{match}"):
        dg.onnx.export(Fn(lambda m, x: m.sub(x), pool), randn(1, 2, size, size))


@pytest.mark.parametrize("f, x, error, match", [
    (lambda m, x: x.argmax(1), randn(2, 5), TracingError, "output 0 of the model changes"),
    (lambda m, x: x * x.argmax(1, keepdim=True), randn(2, 5), TracingError, "changes with the model's inputs"),
    (lambda m, x: x.median(1).values, randn(2, 5), UnsupportedOperatorError, "'TakeAlong'"),
    (lambda m, x: x.sort(1).values, dg.ones(2, 4), TracingError, "ops the model runs change"),  # all ties
])
def test_values_computed_outside_traced_ops_are_refused(f, x, error, match):
    with pytest.raises(error, match=match):
        dg.onnx.export(Fn(f), x)


class ValueMask(nn.Module):
    def forward(self, x):
        return x.masked_fill(x < 0, 0.0)    # the comparison is not an op of the graph


def test_a_constant_that_depends_on_the_inputs_raises_instead_of_freezing_it():
    with pytest.raises(TracingError, match="changes with the model's inputs.*comparison"):
        dg.onnx.export(ValueMask(), randn(3, 4))


def test_bad_names_raise():
    with pytest.raises(OnnxExporterError, match="dynamic_axes names 'batch'"):
        dg.onnx.export(mlp(), randn(2, 8), dynamic_axes={"batch": [0]})
    with pytest.raises(OnnxExporterError, match="2 input_names"):
        dg.onnx.export(mlp(), randn(2, 8), input_names=["a", "b"])


def test_import_distgraph_does_not_import_onnx():
    code = ("import sys, distgraph as dg; dg.onnx.TrainingMode.EVAL; dg.onnx.OperatorExportTypes.ONNX; "
            "dg.export.Dim('batch'); assert 'onnx' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------ torch 2.13's API (dynamo, ONNXProgram)
def torch_or_skip():
    return pytest.importorskip("torch")


def _comparable(default):
    """A default as a plain value (torch's and distgraph's enums compare by name)."""
    return getattr(default, "name", default)


def test_signature_is_torch_onnx_export_s():
    torch = torch_or_skip()
    import inspect
    ours, theirs = inspect.signature(dg.onnx.export), inspect.signature(torch.onnx.export)
    assert list(ours.parameters) == list(theirs.parameters)
    for name, p in theirs.parameters.items():
        q = ours.parameters[name]
        assert q.kind == p.kind, f"{name}: kind {q.kind} here, {p.kind} in torch"
        assert _comparable(q.default) == _comparable(p.default), f"{name}: default {q.default!r}, torch {p.default!r}"
    from distgraph.onnx import exporter
    assert inspect.signature(exporter.export) == ours, "the lazy wrapper and the exporter disagree"


def _torch_mlp(torch, model):
    """torch's copy of ``mlp()`` with the same weights (eval: dropout off)."""
    layers = [m for m in model if isinstance(m, nn.Linear)]
    seq = torch.nn.Sequential(*[torch.nn.Linear(m.in_features, m.out_features) for m in layers])
    with torch.no_grad():
        for t, m in zip(seq, layers):
            t.weight.copy_(torch.from_numpy(m.weight.detach().numpy()))
            t.bias.copy_(torch.from_numpy(m.bias.detach().numpy()))
    return torch.nn.Sequential(seq[0], torch.nn.ReLU(), seq[1], torch.nn.ReLU(), seq[2]).eval()


@pytest.mark.parametrize("options", [{}, {"export_params": False}, {"keep_initializers_as_inputs": True}])
def test_dynamo_false_returns_none_and_writes_what_torch_writes(tmp_path, options):
    torch = torch_or_skip()
    dg.manual_seed(0)
    model, x = mlp(), randn(3, 8)
    tmodel = _torch_mlp(torch, model)
    names = dict(input_names=["features"], output_names=["logits"],
                 dynamic_axes={"features": [0], "logits": {0: "batch"}}, **options)
    with pytest.warns(DeprecationWarning):
        assert torch.onnx.export(tmodel, (torch.from_numpy(x.numpy()),), tmp_path / "t.onnx", dynamo=False,
                                 **names) is None
    assert dg.onnx.export(model, (x,), tmp_path / "d.onnx", dynamo=False, **names) is None
    t, d = onnx.load(str(tmp_path / "t.onnx")), onnx.load(str(tmp_path / "d.onnx"))

    def dims(vs):
        return [(v.name, [dm.dim_param or dm.dim_value for dm in v.type.tensor_type.shape.dim]) for v in vs]
    # torch names parameters by their state_dict keys too; its Sequential has none of the Dropouts
    rename = {f"{i}.{k}": f"{j}.{k}" for i, j in ((0, 0), (2, 3), (4, 6)) for k in ("weight", "bias")}
    assert [rename.get(n, n) for n, _ in dims(t.graph.input)] == [n for n, _ in dims(d.graph.input)]
    assert dims(t.graph.input)[0] == dims(d.graph.input)[0] == ("features", ["features_dynamic_axes_1", 8])
    assert dims(t.graph.output) == dims(d.graph.output) == [("logits", ["batch", 4])]
    assert sorted(rename.get(i.name, i.name) for i in t.graph.initializer) == \
        sorted(i.name for i in d.graph.initializer)
    feeds = {"features": np.random.default_rng(3).standard_normal((5, 8)).astype(np.float32)}
    if options.get("export_params") is False:
        feeds.update({k: v.numpy() for k, v in model.state_dict().items()})
    got = []
    for proto, keys in ((t, {v: k for k, v in rename.items()}), (d, {})):
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got.append(sess.run(None, {keys.get(k, k): v for k, v in feeds.items()})[0])
    np.testing.assert_allclose(got[1], got[0], **TOL)


def test_dynamic_shapes_with_dynamo_false_is_a_value_error_as_in_torch(tmp_path):
    torch = torch_or_skip()
    with pytest.raises(ValueError, match="dynamic_axes"):
        torch.onnx.export(torch.nn.Linear(8, 2), (torch.randn(3, 8),), tmp_path / "t.onnx", dynamo=False,
                          dynamic_shapes={"input": {0: torch.export.Dim("b")}})
    with pytest.raises(ValueError, match="dynamic_axes"):
        dg.onnx.export(mlp(), (randn(3, 8),), tmp_path / "d.onnx", dynamo=False,
                       dynamic_shapes={"input": {0: dg.export.Dim("b")}})
    assert not (tmp_path / "d.onnx").exists()


def test_dynamo_true_returns_an_onnx_program_that_runs_as_the_model(tmp_path):
    dg.manual_seed(0)
    model, x = LSTMLanguageModel(True), tokens(3, 6)
    program = dg.onnx.export(model, (x,), dynamic_shapes=({0: "batch", 1: "time"},))
    assert isinstance(program, dg.onnx.ONNXProgram) and program.exported_program is None
    model.eval()
    for args in ([x], [tokens(5, 9, seed=1)]):
        got, want = program(*args), outputs(model, args)
        assert isinstance(got, tuple) and len(got) == len(want) == 3
        for g, w in zip(got, want):
            assert isinstance(g, dg.Tensor) and g.device == dg.device("cpu")
            np.testing.assert_allclose(g.numpy(), w, **TOL)
    np.testing.assert_allclose(program.call_reference(x)[0].numpy(), outputs(model, [x])[0], **TOL)
    with pytest.raises(OnnxExporterError, match="expected 1 tensors"):
        program(x, x)
    with pytest.raises(NotImplementedError, match="model_proto"):
        program.model


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 3)

    def forward(self, x, scale=None):
        return self.body(x) * scale


def test_one_output_comes_back_as_a_tuple_and_kwargs_are_inputs_after_args():
    dg.manual_seed(0)
    model = Scaled()
    x, s = randn(2, 4), randn(2, 3, seed=1)
    program = dg.onnx.export(model, (x,), kwargs={"scale": s})
    assert [i.name for i in program.model_proto.graph.input] == ["x", "scale"]
    (y,) = program(x, scale=s)
    np.testing.assert_allclose(y.numpy(), outputs(model, [x, s])[0], **TOL)
    # as torch: with no kwargs given, a dict at the end of args holds the keyword arguments
    again = dg.onnx.export(model, (x, {"scale": s}))
    assert [i.name for i in again.model_proto.graph.input] == ["x", "scale"]


def test_compute_values_session_hooks_and_release():
    dg.manual_seed(0)
    model, x = mlp(), randn(3, 8)
    program = dg.onnx.export(model, x)
    first = program.model_proto.graph.node[0]
    assert first.op_type == "Gemm"
    (hidden,) = program.compute_values([first.output[0]], (x,))
    model.eval()
    with dg.no_grad():
        np.testing.assert_allclose(hidden.numpy(), model[0](x).numpy(), **TOL)
    with pytest.raises(ValueError, match="not values of the graph"):
        program.compute_values(["no such value"], (x,))
    made = []

    def initializer(m):
        made.append(type(m))
        return ort.InferenceSession(m, providers=["CPUExecutionProvider"])
    program.initialize_inference_session(initializer)
    program(x)
    program(x)
    assert made == [bytes], "the session is made once, from the serialized model"
    program.release()
    np.testing.assert_allclose(program(x)[0].numpy(), outputs(model, [x])[0], **TOL)


def _check_saved(path, model, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, outputs(model, [x])[0], rtol=1e-5, atol=1e-5)


def test_save_with_and_without_external_data(tmp_path):
    dg.manual_seed(0)
    model, x = lenet(), randn(2, 1, 28, 28)
    program = dg.onnx.export(model, x)
    program.save(tmp_path / "inline.onnx")
    assert not (tmp_path / "inline.onnx.data").exists()
    assert (tmp_path / "inline.onnx").read_bytes() == program.model_proto.SerializeToString()
    _check_saved(tmp_path / "inline.onnx", model, x)
    for _ in range(2):                        # saved again: the data file is rewritten, not appended to
        program.save(str(tmp_path / "ext.onnx"), external_data=True)
        sizes = [onnx.numpy_helper.to_array(t).nbytes for t in program.model_proto.graph.initializer]
        assert (tmp_path / "ext.onnx.data").stat().st_size == sum(n for n in sizes if n >= 1024)
    assert (tmp_path / "ext.onnx").stat().st_size < 10_000, "the weights should be in ext.onnx.data"
    _check_saved(tmp_path / "ext.onnx", model, x)
    assert program.model_proto.graph.initializer[0].HasField("raw_data"), "save changed the program's model"
    with pytest.raises(TypeError, match="needs a file path"):
        program.save(io.BytesIO(), external_data=True)


def test_save_initializer_options_as_torch_documents(tmp_path):
    dg.manual_seed(0)
    model, x = mlp(), randn(3, 8)
    program = dg.onnx.export(model, x)
    keys = [t.name for t in program.model_proto.graph.initializer]
    cases = {(True, False): (["input"], keys), (True, True): (["input"] + keys, keys),
             (False, False): (["input"], []), (False, True): (["input"] + keys, [])}
    for (include, keep), (inputs, inits) in cases.items():
        f = io.BytesIO()
        program.save(f, include_initializers=include, keep_initializers_as_inputs=keep)
        saved = onnx.load_from_string(f.getvalue())
        assert [i.name for i in saved.graph.input] == inputs, (include, keep)
        assert [t.name for t in saved.graph.initializer] == inits, (include, keep)
    # the weights fed as inputs give the model's output
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in program.model_proto.graph.initializer}
    sess = ort.InferenceSession(saved.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy(), **weights})[0], outputs(model, [x])[0], **TOL)
    assert [i.name for i in program.model_proto.graph.input] == ["input"], "save changed the program's model"


def test_dynamo_export_params_and_keep_initializers_shape_only_the_file(tmp_path):
    dg.manual_seed(0)
    model, x = mlp(), randn(3, 8)
    program = dg.onnx.export(model, x, tmp_path / "m.onnx", export_params=False, keep_initializers_as_inputs=True)
    assert len(program.model_proto.graph.initializer) == 6 and len(program.model_proto.graph.input) == 1
    saved = onnx.load(str(tmp_path / "m.onnx"))
    assert not saved.graph.initializer and len(saved.graph.input) == 7
    assert not (tmp_path / "m.onnx.data").exists(), "no initializers, so no external data"


def test_f_is_written_with_external_data_by_default_and_as_one_file_on_request(tmp_path):
    dg.manual_seed(0)
    model, x = lenet(), randn(2, 1, 28, 28)
    buf = io.BytesIO()
    program = dg.onnx.export(model, x, tmp_path / "a.onnx")
    dg.onnx.export(model, x, tmp_path / "b.onnx", external_data=False)
    dg.onnx.export(model, x, buf)
    assert (tmp_path / "a.onnx.data").exists() and not (tmp_path / "b.onnx.data").exists()
    assert (tmp_path / "b.onnx").read_bytes() == buf.getvalue() == program.model_proto.SerializeToString()
    for name in ("a.onnx", "b.onnx"):
        _check_saved(tmp_path / name, model, x)


def test_dynamic_shapes_make_the_batch_dim_symbolic():
    dg.manual_seed(0)
    model = mlp()
    Dim = dg.export.Dim
    for spec, name in [({"input": {0: Dim("batch", min=2, max=64)}}, "batch"), ({"input": {0: "n"}}, "n"),
                       (({0: Dim.DYNAMIC},), "input_dim_0"), ({"input": (Dim.AUTO, None)}, "input_dim_0"),
                       ([[Dim("b"), 8]], "b")]:
        program = dg.onnx.export(model, (randn(3, 8),), dynamic_shapes=spec, input_names=None)
        g = program.model_proto.graph
        assert [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == [name, 8], spec
        assert g.output[0].type.tensor_type.shape.dim[0].dim_param == name, "the output follows the input's dim"
        for n in (2, 7):
            x = randn(n, 8, seed=n)
            np.testing.assert_allclose(program(x)[0].numpy(), outputs(model, [x])[0], **TOL)
    program = dg.onnx.export(model, (randn(3, 8),), dynamic_shapes={"input": {0: Dim.STATIC}})
    assert program.model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3


def test_dynamic_shapes_follow_nesting_and_input_names():
    dg.manual_seed(0)
    model = Fn(lambda m, pair, scale: (pair[0] + pair[1]) * scale)
    a, b, s = randn(3, 4), randn(3, 4, seed=1), randn(3, 4, seed=2)
    batch = dg.export.Dim("batch")
    program = dg.onnx.export(model, ((a, b), s), input_names=["a", "b", "s"],
                             dynamic_shapes={"inputs": (({0: batch}, {0: batch}), {0: batch})})
    dims = {i.name: i.type.tensor_type.shape.dim[0].dim_param for i in program.model_proto.graph.input}
    assert dims == {"a": "batch", "b": "batch", "s": "batch"}
    a5, b5, s5 = randn(5, 4, seed=3), randn(5, 4, seed=4), randn(5, 4, seed=5)
    np.testing.assert_allclose(program((a5, b5), s5)[0].numpy(), ((a5 + b5) * s5).numpy(), **TOL)


def test_torch_export_dim_objects_are_read_by_name():
    torch = torch_or_skip()
    program = dg.onnx.export(mlp(), (randn(3, 8),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    assert program.model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    program = dg.onnx.export(mlp(), (randn(3, 8),), dynamic_shapes={"input": {0: torch.export.Dim.DYNAMIC}})
    assert program.model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "input_dim_0"


class PairSum(nn.Module):
    def forward(self, x, y):
        return x.sum(0) + y.sum(0)


# (x rows, y rows, dynamic_shapes as a function of the Dim class): whether torch.export accepts it
DYNAMIC_SHAPE_RULES = {
    "named_on_size_1": (1, 3, lambda D: {"x": {0: D("b")}, "y": {0: D.STATIC}}),
    "dynamic_on_size_1": (1, 3, lambda D: {"x": {0: D.DYNAMIC}, "y": {0: D.STATIC}}),
    "auto_on_size_1_is_static": (1, 3, lambda D: {"x": {0: D.AUTO}, "y": {0: D.STATIC}}),
    "below_min": (3, 3, lambda D: {"x": {0: D("b", min=4)}, "y": {0: D.STATIC}}),
    "above_max": (3, 3, lambda D: {"x": {0: D("b", max=2)}, "y": {0: D.STATIC}}),
    "int_is_the_size": (3, 3, lambda D: {"x": {0: 3}, "y": {0: D.STATIC}}),
    "int_is_another_size": (3, 3, lambda D: {"x": {0: 5}, "y": {0: D.STATIC}}),
    "one_dim_two_sizes": (3, 5, lambda D: {"x": {0: D("b")}, "y": {0: D("b")}}),
    "one_dim_equal_sizes": (4, 4, lambda D: {"x": {0: D("b")}, "y": {0: D("b")}}),
    "unknown_argument": (3, 3, lambda D: {"x": {0: D("b")}, "y": {0: D.STATIC}, "z": None}),
    "tuple_form": (3, 3, lambda D: ({0: D("b")}, {0: D.STATIC})),
    "tuple_too_short": (3, 3, lambda D: ({0: D("b")},)),
}


@pytest.mark.parametrize("case", list(DYNAMIC_SHAPE_RULES))
def test_dynamic_shapes_are_accepted_and_refused_as_torch_export_does(case):
    torch = torch_or_skip()
    nx, ny, spec = DYNAMIC_SHAPE_RULES[case]

    class TorchPairSum(torch.nn.Module):
        def forward(self, x, y):
            return x.sum(0) + y.sum(0)
    try:
        torch.export.export(TorchPairSum(), (torch.randn(nx, 4), torch.randn(ny, 4)),
                            dynamic_shapes=spec(torch.export.Dim))
        torch_accepts = True
    except Exception:
        torch_accepts = False
    try:
        dg.onnx.export(PairSum(), (randn(nx, 4), randn(ny, 4, seed=1)), dynamic_shapes=spec(dg.export.Dim))
        ours = None
    except OnnxExporterError as e:
        ours = e
    assert (ours is None) == torch_accepts, f"torch.export {'accepts' if torch_accepts else 'refuses'} it; " \
                                            f"distgraph: {ours}"


def test_dynamic_shapes_win_over_dynamic_axes_with_a_warning():
    with pytest.warns(UserWarning, match="dynamic_axes is ignored"):
        program = dg.onnx.export(mlp(), (randn(3, 8),), dynamic_axes={"input": {0: "ignored"}},
                                 dynamic_shapes={"input": {0: "batch"}})
    assert program.model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_dim_mirrors_torch_export_dim():
    torch = torch_or_skip()
    for D in (dg.export.Dim, torch.export.Dim):
        d = D("batch", min=2, max=64)
        assert (d.__name__, d.min, d.max) == ("batch", 2, 64)
        assert D.AUTO.type.name == "AUTO" and D.DYNAMIC.type.name == "DYNAMIC" and D.STATIC.type.name == "STATIC"
        assert D.AUTO(min=2).min == 2
        with pytest.raises(Exception):
            D("not a name")
        with pytest.raises(Exception):
            D("b", min=4, max=2)
    with pytest.raises(NotImplementedError, match="dg.onnx.export"):
        dg.export.export(mlp(), (randn(2, 8),))


def _relu_as_sigmoid(g, op):
    from distgraph.onnx.registry import arg
    return g.node("Sigmoid", [arg(g, op)])


def test_verify_passes_a_good_export_and_catches_a_wrong_converter(monkeypatch, tmp_path):
    from distgraph.autograd.ops import activation
    from distgraph.onnx import registry
    dg.manual_seed(0)
    model, x = mlp(), randn(4, 8)
    for dynamo in (True, False):
        dg.onnx.export(model, x, verify=True, dynamo=dynamo)
    dg.onnx.export(LSTMLanguageModel(True), (tokens(3, 6),), verify=True)      # int inputs, three outputs
    dg.onnx.export(Fn(lambda m, x: tuple(x.topk(3, 1))), randn(2, 6), verify=True)  # int64 indices
    monkeypatch.setitem(registry.CONVERTERS, activation.Relu, _relu_as_sigmoid)
    broken = dg.onnx.export(model, x)                 # without verify the wrong graph goes through
    assert "Sigmoid" in [n.op_type for n in broken.model_proto.graph.node]
    for dynamo in (True, False):
        with pytest.raises(OnnxExporterError, match=r"verify=True: output 0 \('output'\) differs.*max \|onnxruntime"):
            dg.onnx.export(model, x, tmp_path / "broken.onnx", verify=True, dynamo=dynamo)
        assert not (tmp_path / "broken.onnx").exists(), "a model that fails verification is not written"


def test_optimize_bypasses_identities_and_drops_dead_nodes():
    dg.manual_seed(0)
    model = Fn(lambda m, x: m.sub(x.clone()).clone() * 2, nn.Linear(4, 3))
    x = randn(2, 4)
    plain = dg.onnx.export(model, x, optimize=False)
    assert [n.op_type for n in plain.model_proto.graph.node].count("Identity") == 2
    program = dg.onnx.export(model, x)                # optimize=True is the default, as torch
    ops = [n.op_type for n in program.model_proto.graph.node]
    assert "Identity" not in ops and len(ops) == len(plain.model_proto.graph.node) - 2, ops
    dead = plain.model_proto.graph
    dead.node.append(onnx.helper.make_node("Neg", ["input_0"], ["unused"]))
    plain.release()
    plain.optimize()
    assert "Neg" not in [n.op_type for n in plain.model_proto.graph.node]
    for p in (plain, program):
        onnx.checker.check_model(p.model_proto, full_check=True)
        np.testing.assert_allclose(p(x)[0].numpy(), outputs(model, [x])[0], **TOL)


def test_apply_weights_and_rename_axes():
    dg.manual_seed(0)
    model, x = mlp(), randn(3, 8)
    program = dg.onnx.export(model, x, dynamic_shapes={"input": {0: "n"}})
    program(x)                                         # a session exists: apply_weights must replace it
    other = mlp()
    program.apply_weights(other.state_dict())
    np.testing.assert_allclose(program(x)[0].numpy(), outputs(other, [x])[0], **TOL)
    with pytest.warns(dg.onnx.OnnxExporterWarning, match="'missing' is not an initializer"):
        program.apply_weights({"missing": np.zeros(3, np.float32)})
    with pytest.raises(OnnxExporterError, match="expected shape"):
        program.apply_weights({"0.weight": np.zeros((2, 2), np.float32)})
    program.rename_axes({"n": "batch"})
    g = program.model_proto.graph
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == g.output[0].type.tensor_type.shape.dim[0].dim_param \
        == "batch"


@pytest.mark.parametrize("option, match", [
    ({"custom_translation_table": {"aten::relu": print}}, "custom_translation_table.*register_converter"),
    ({"custom_opsets": {"com.example": 1}}, "custom_opsets.*ai.onnx"),
    ({"export_modules_as_functions": True}, "export_modules_as_functions.*register_module_converter"),
    ({"export_modules_as_functions": {nn.Linear}}, "export_modules_as_functions"),
    ({"operator_export_type": dg.onnx.OperatorExportTypes.ONNX_ATEN_FALLBACK}, "ONNX_ATEN_FALLBACK.*expected"),
    ({"operator_export_type": 1}, "ONNX_ATEN is not supported"),
])
def test_unsupported_torch_options_raise_not_implemented(option, match):
    with pytest.raises(NotImplementedError, match=match):
        dg.onnx.export(mlp(), randn(2, 8), **option)


def test_torch_operator_export_type_enum_is_read_by_name():
    torch = torch_or_skip()
    dg.onnx.export(mlp(), randn(2, 8), operator_export_type=torch.onnx.OperatorExportTypes.ONNX,
                   training=torch.onnx.TrainingMode.EVAL)
    with pytest.raises(NotImplementedError, match="ONNX_FALLTHROUGH"):
        dg.onnx.export(mlp(), randn(2, 8), operator_export_type=torch.onnx.OperatorExportTypes.ONNX_FALLTHROUGH)


def test_torch_debugging_options_are_accepted_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = dg.onnx.export(mlp(), randn(2, 8), report=True, profile=True, dump_exported_program=True,
                             artifacts_dir=tmp_path / "artifacts", autograd_inlining=False, custom_opsets={},
                             custom_translation_table={}, export_modules_as_functions=False)
    assert isinstance(program, dg.onnx.ONNXProgram)
    assert list(tmp_path.iterdir()) == []
