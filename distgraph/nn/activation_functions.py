"""Activation functions of ``nn.functional`` (re-exported there), composed from the engine's ops
so that their gradients come from the primitives' rules.  ``inplace=`` is accepted as in PyTorch;
the result is computed out of place and, when asked, written back into ``input``."""
from __future__ import annotations


from distgraph.autograd import grad_mode
from distgraph.autograd.ops import activation as _act
from distgraph.autograd.ops import clamp, exp, log, maximum, minimum, sigmoid, tanh, where
from distgraph.autograd.ops.nn import softmax

__all__ = ["relu", "relu6", "elu", "celu", "selu", "leaky_relu", "silu", "mish", "hardtanh", "hardsigmoid",
           "hardswish", "logsigmoid", "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold",
           "prelu", "glu", "rrelu", "softmin", "gumbel_softmax"]

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _out(input, y, inplace):
    if inplace:
        with grad_mode.no_grad():
            input.copy_(y)
        return input
    return y


def relu(input, inplace=False):
    return _out(input, _act.relu(input), inplace)


def silu(input, inplace=False):
    return _out(input, _act.silu(input), inplace)


def elu(input, alpha=1.0, inplace=False):
    return _out(input, _act.elu(input, alpha), inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _out(input, _act.leaky_relu(input, negative_slope), inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return _out(input, clamp(input, min_val, max_val), inplace)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def celu(input, alpha=1.0, inplace=False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    neg = alpha * (exp(minimum(input, 0.0 * input) / alpha) - 1)
    return _out(input, where(input > 0, input, neg), inplace)


def selu(input, inplace=False):
    neg = _SELU_ALPHA * (exp(minimum(input, 0.0 * input)) - 1)
    return _out(input, _SELU_SCALE * where(input > 0, input, neg), inplace)


def mish(input, inplace=False):
    return _out(input, input * tanh(_act.softplus(input)), inplace)


def hardsigmoid(input, inplace=False):
    return _out(input, clamp(input / 6 + 0.5, 0.0, 1.0), inplace)


def hardswish(input, inplace=False):
    return _out(input, input * clamp(input + 3, 0.0, 6.0) / 6, inplace)


def logsigmoid(input):
    """``-softplus(-x)``, stable for large ``|x|``."""
    return -_act.softplus(-input)


def softsign(input):
    return input / (1 + abs(input))


def tanhshrink(input):
    return input - tanh(input)


def softshrink(input, lambd=0.5):
    return where(input > lambd, input - lambd, where(input < -lambd, input + lambd, 0.0 * input))


def hardshrink(input, lambd=0.5):
    return where((input > lambd) | (input < -lambd), input, 0.0 * input)


def threshold(input, threshold, value, inplace=False):
    return _out(input, where(input > threshold, input, value + 0.0 * input), inplace)


def prelu(input, weight):
    """``max(0, x) + weight * min(0, x)``; ``weight`` has 1 or C (dim 1) entries."""
    w = weight
    if weight.numel() > 1 and input.ndim > 1:
        w = weight.reshape((1, -1) + (1,) * (input.ndim - 2))
    return maximum(input, 0.0 * input) + w * minimum(input, 0.0 * input)


def glu(input, dim=-1):
    """``a * sigmoid(b)`` for the two halves ``a, b`` of ``input`` along ``dim``."""
    if input.shape[dim] % 2:
        raise RuntimeError(f"glu: halving dimension {dim} needs an even size, got {input.shape[dim]}")
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Randomized leaky ReLU: slope ~ U(lower, upper) per element in training, ``(lower+upper)/2`` otherwise."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    from distgraph.autograd.creation import empty_like
    slope = empty_like(input).uniform_(lower, upper)
    return _out(input, where(input >= 0, input, input * slope), inplace)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    return softmax(-input, dim, dtype)


def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
    """Samples from the Gumbel-softmax distribution; ``hard=True`` returns one-hot samples whose
    gradient is the soft sample's (straight-through)."""
    from distgraph.autograd.creation import empty_like
    gumbels = -log(empty_like(logits).exponential_())
    y = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return y
    idx = y.argmax(dim, keepdim=True)
    from distgraph.autograd.creation import zeros_like
    one_hot = zeros_like(logits).scatter_(dim, idx, 1.0)
    return one_hot - y.detach() + y


