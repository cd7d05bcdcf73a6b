# torch.compile idioms a training script types: compiling a model (the OptimizedModule it returns: _orig_mod,
# state_dict keys, train/eval, attribute access), Module.compile() in place, @torch.compile on a whole
# training step, torch.compiler / torch._dynamo's knobs, saving a compiled model's weights.  Every model
# trains in float64 from the same NumPy-made weights, so the losses agree to many digits.  Prints one
# JSON line: each idiom's result, or the error it raised.  Run: python compile_idioms.py
import io
import json

import numpy as np
from sklearn.datasets import load_digits

import torch
import torch.nn as nn
import torch.nn.functional as F

res = {}


def rec(name, fn):
    try:
        res[name] = fn()
    except Exception as e:
        res[name] = f"ERR {type(e).__name__}"


def net():
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.1))
    return m


digits = load_digits()
X = torch.tensor(digits.data[:480] / 16.0)
Y = torch.tensor(digits.target[:480])
batches = [(X[i:i + 48], Y[i:i + 48]) for i in range(0, 480, 48)]


def losses(model, params, compiled_step=None):
    opt = torch.optim.SGD(params, lr=0.2, momentum=0.9) if compiled_step is None else None
    out = []
    for x, y in batches:
        if compiled_step is not None:
            loss = compiled_step(x, y)
        else:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        out.append(round(loss.item(), 9))
    return out


# --- a compiled model, trained with the backward outside (the habit from the torch.compile tutorial)
m = net()
cm = torch.compile(m)
rec("isinstance", lambda: isinstance(cm, nn.Module))
rec("orig_mod", lambda: cm._orig_mod is m)
rec("keys", lambda: list(cm.state_dict().keys()))
rec("eval_is_self", lambda: cm.eval() is cm)
rec("orig_training_after_eval", lambda: m.training)
rec("train_is_self", lambda: cm.train() is cm)
rec("named_modules", lambda: [n for n, _ in cm.named_modules()])
rec("n_parameters", lambda: len(list(cm.parameters())))
rec("repr_head", lambda: repr(cm).splitlines()[:2])
rec("len", lambda: len(cm))
rec("getitem", lambda: type(cm[0]).__name__)
rec("setattr_reaches_orig", lambda: (setattr(cm, "tag", 7), getattr(m, "tag", None))[1])
rec("attribute_of_orig", lambda: cm.tag)
rec("load_prefixed", lambda: str(cm.load_state_dict(cm.state_dict())))


def load_plain():
    try:
        cm.load_state_dict(m.state_dict())
    except RuntimeError as e:
        return [ln.split(":")[0].strip() for ln in str(e).splitlines()]
rec("load_plain_keys_error", load_plain)
rec("trained_compiled_model", lambda: losses(cm, cm.parameters()))


def eager_twin():
    e = net()
    return losses(e, e.parameters())
rec("eager_losses", eager_twin)


def save_orig():
    buf = io.BytesIO()
    torch.save(cm._orig_mod.state_dict(), buf)
    buf.seek(0)
    fresh = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    fresh.load_state_dict(torch.load(buf))
    return bool(torch.equal(fresh(X[:5]), m(X[:5])))
rec("saved_orig_mod_weights_reload", save_orig)

# --- eval under no_grad, then back to training
def evaluate():
    cm.eval()
    with torch.no_grad():
        acc = [(cm(X).argmax(1) == Y).double().mean().item() for _ in range(3)]
    cm.train()
    return [round(a, 9) for a in acc]
rec("eval_accuracy", evaluate)

# --- Module.compile(): in place
def in_place():
    model = net()
    model.compile(backend="eager")
    return {"type": type(model).__name__, "keys": list(model.state_dict())[:2],
            "losses": losses(model, model.parameters())}
rec("module_compile", in_place)

# --- @torch.compile on a whole training step
def whole_step():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)

    @torch.compile(backend="eager")
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return losses(model, None, step)
rec("compiled_step", whole_step)

# --- torch.compiler / torch._dynamo knobs
rec("is_compiling_outside", lambda: torch.compiler.is_compiling())


def inside():
    @torch.compile(backend="eager")
    def f(x):
        return x + 1 if torch.compiler.is_compiling() else x - 1
    return [f(torch.ones(2)).tolist() for _ in range(3)]
rec("is_compiling_inside", inside)
rec("reset", lambda: [torch.compiler.reset(), torch._dynamo.reset()])
rec("disable", lambda: torch.compiler.disable(lambda x: x * 2)(torch.ones(2)).tolist())


def disabled_in_compiled():
    @torch.compiler.disable
    def helper(x):
        return x * 3

    @torch.compile(backend="eager")
    def f(x):
        return helper(x) + 1
    return [f(torch.ones(2)).tolist() for _ in range(3)]
rec("disable_inside_compiled", disabled_in_compiled)
rec("cache_size_limit", lambda: torch._dynamo.config.cache_size_limit)


def recompile_alias():
    old = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.recompile_limit = 5
    got = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = old
    return got
rec("recompile_limit_alias", recompile_alias)
rec("unknown_config", lambda: setattr(torch._dynamo.config, "no_such_knob", 1))
rec("mark_dynamic", lambda: torch._dynamo.mark_dynamic(torch.ones(3, 2), 0))
rec("bad_mode", lambda: torch.compile(net(), mode="fastest"))
rec("mode_and_options", lambda: torch.compile(net(), mode="max-autotune", options={"x": 1}))
rec("modes", lambda: [type(torch.compile(net(), mode=md)).__name__ for md in
                      ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")])
rec("disable_kw", lambda: torch.compile(m, disable=True) is m)
rec("decorator_keeps_name", lambda: torch.compile(backend="eager")(eager_twin).__name__)
rec("compiled_function_called", lambda: torch.compile(lambda a, b: a * b + 1, backend="eager")(
    torch.full((2,), 2.0), torch.full((2,), 3.0)).tolist())
print(json.dumps(res))
