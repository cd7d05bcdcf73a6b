# torch namespaces beyond the training loop, as scripts use them: torch.distributions in a small VAE-style
# objective and a policy-gradient step, torch.linalg solves, torch.special, torch.func, weight norm, an EMA
# of the weights (swa_utils), a lazy layer, float64 as the default dtype.  Every weight comes from NumPy, so
# the results agree to many digits.  Prints one JSON line: each idiom's result, or the error it raised.
# Run: python extras_idioms.py
import json

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, Normal, kl_divergence
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

res = {}


def rec(name, fn):
    try:
        res[name] = fn()
    except Exception as e:
        res[name] = f"ERR {type(e).__name__}"


def r(x, digits=9):
    if isinstance(x, torch.Tensor):
        x = x.detach().tolist()
    if isinstance(x, list):
        return [r(v, digits) for v in x]
    return round(float(x), digits)


torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(0)


def filled(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.3))
    return module


rec("default_dtype", lambda: [str(torch.get_default_dtype()), str(torch.zeros(1).dtype), str(torch.tensor(1.5).dtype)])
x = torch.tensor(rng.standard_normal((6, 4)))


def vae_objective():
    enc, dec = filled(nn.Linear(4, 4)), filled(nn.Linear(2, 4))
    mu, log_sigma = enc(x).chunk(2, dim=-1)
    q = Normal(mu, log_sigma.exp())
    z = mu + log_sigma.exp() * torch.tensor(rng.standard_normal((6, 2)))    # the reparameterised draw, by hand
    loss = F.mse_loss(dec(z), x) + kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()
    loss.backward()
    return [r(loss), r(enc.weight.grad.sum()), r(q.log_prob(z).sum()), r(q.entropy().sum())]
rec("vae_objective", vae_objective)


def policy_gradient():
    policy = filled(nn.Linear(4, 3))
    dist = Categorical(logits=policy(x))
    actions = torch.tensor([0, 2, 1, 1, 0, 2])
    loss = -(dist.log_prob(actions) * torch.linspace(-1, 1, 6)).mean() - 0.01 * dist.entropy().mean()
    loss.backward()
    return [r(loss), r(policy.weight.grad)]
rec("policy_gradient", policy_gradient)


def linalg():
    a = torch.tensor(rng.standard_normal((3, 3))) + 3 * torch.eye(3)
    spd = a @ a.T
    b = torch.tensor(rng.standard_normal((3, 2)))
    return [r(torch.linalg.solve(a, b)), r(torch.linalg.det(a)), r(torch.linalg.slogdet(a).logabsdet),
            r(torch.linalg.cholesky(spd)), r(torch.linalg.eigvalsh(spd)), r(torch.inverse(a).sum()),
            r(torch.linalg.norm(a))]
rec("linalg", linalg)
rec("special", lambda: [r(torch.special.gammaln(torch.tensor([0.5, 3.0]))), r(torch.special.expit(torch.tensor(0.3))),
                        r(torch.special.ndtr(torch.tensor([-1.0, 0.5]))), r(torch.lgamma(torch.tensor(4.5))),
                        r(torch.digamma(torch.tensor([1.0, 2.5])), 8), r(torch.logit(torch.tensor(0.25)))])


def functional():
    model = filled(nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)))
    params = {k: v.detach() * 0.5 for k, v in model.named_parameters()}
    out = torch.func.functional_call(model, params, (x,))

    def loss_of(p):
        return torch.func.functional_call(model, p, (x,)).pow(2).mean()
    grads = torch.func.grad(loss_of)(params)
    jac = torch.autograd.functional.jacobian(lambda v: model(v).sum(0), x[:2])
    return [r(out.sum()), r(grads["0.weight"].sum()), r(jac.sum()), list(jac.shape)]
rec("functional", functional)


def weight_norm():
    lin = nn.utils.parametrizations.weight_norm(filled(nn.Linear(4, 3)))
    out = lin(x).sum()
    out.backward()
    return [sorted(lin.state_dict()), r(out), r(lin.parametrizations.weight.original0.grad.sum())]
rec("weight_norm", weight_norm)


def ema():
    model = filled(nn.Linear(4, 2))
    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(4):
        opt.zero_grad()
        model(x * (i + 1)).pow(2).mean().backward()
        opt.step()
        avg.update_parameters(model)
    return [r(avg.module.weight), int(avg.n_averaged), sorted(avg.state_dict())]
rec("ema", ema)


def lazy():
    layer = nn.LazyLinear(5)
    before = [type(p).__name__ for p in layer.parameters()]
    layer(x)
    return [before, type(layer).__name__, layer.in_features, list(layer.weight.shape), str(layer.weight.dtype)]
rec("lazy", lazy)
rec("multinomial_shape", lambda: list(torch.multinomial(torch.ones(3, 5), 2).shape))
rec("where_condition", lambda: [t.tolist() for t in torch.where(x > 1.0)])
torch.set_default_dtype(torch.float32)
rec("default_dtype_back", lambda: str(torch.tensor(1.5).dtype))


def plain(v):   # dtype names without the "torch." prefix (distgraph prints NumPy's names)
    if isinstance(v, str):
        return v.replace("torch.", "")
    return [plain(u) for u in v] if isinstance(v, list) else v


print(json.dumps({k: plain(v) for k, v in res.items()}))
