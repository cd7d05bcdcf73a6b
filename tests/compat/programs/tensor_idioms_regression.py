# Everyday tensor idioms around a small regression on scikit-learn's diabetes data: a model that
# predicts a mean and a log-scale, trained by the Gaussian negative log-likelihood written by hand
# (and checked against F.gaussian_nll_loss); features built with torch.cat/stack/chunk/split,
# F.one_hot of a binned feature, torch.where, gather, scatter_add_ (per-bin sums), cumsum, F.interpolate;
# float64 via .to(dtype), .item(), .tolist(), tensor printing and format(); torch.manual_seed
# reproducibility of a whole run.
# Run: python tensor_idioms_regression.py   -- prints one JSON line of metrics.
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_diabetes


def features(x, n_bins=5):
    bmi = x[:, 2].contiguous()
    edges = torch.quantile(bmi, torch.linspace(0, 1, n_bins + 1)[1:-1].to(bmi.dtype))
    bins = torch.bucketize(bmi, edges)
    onehot = F.one_hot(bins, n_bins).to(x.dtype)
    sex_sign = torch.where(x[:, 1] > 0, torch.ones_like(bmi), -torch.ones_like(bmi))
    first, second = torch.chunk(x, 2, dim=1)
    parts = torch.split(x, [4, 6], dim=1)
    assert torch.equal(torch.cat(parts, 1), x) and first.shape[1] == 5 and second.shape[1] == 5
    return torch.cat([x, onehot, torch.stack([sex_sign, bmi * bmi], dim=1)], dim=1), bins


class MeanScale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 32), nn.Tanh())
        self.mean = nn.Linear(32, 1)
        self.log_scale = nn.Linear(32, 1)

    def forward(self, x):
        h = self.body(x)
        return self.mean(h).squeeze(-1), self.log_scale(h).squeeze(-1)


def nll(mu, log_sigma, y):
    return (log_sigma + 0.5 * ((y - mu) / log_sigma.exp()) ** 2 + 0.5 * math.log(2 * math.pi)).mean()


def run(seed):
    torch.manual_seed(seed)
    d = load_diabetes()
    x = torch.tensor(d.data).to(torch.float32)
    y = torch.tensor(d.target, dtype=torch.float32)
    y = (y - y.mean()) / y.std()
    feats, bins = features(x * 10)
    perm = torch.randperm(len(y))
    train, test = perm[:350], perm[350:]
    model = MeanScale(feats.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for step in range(300):
        idx = train[torch.randint(0, len(train), (64,))]
        mu, log_sigma = model(feats[idx])
        loss = nll(mu, log_sigma, y[idx])
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mu, log_sigma = model(feats[test])
        test_nll = nll(mu, log_sigma, y[test]).item()
        ref_nll = F.gaussian_nll_loss(mu, y[test], (2 * log_sigma).exp(), full=True).item()
        mse = F.mse_loss(mu, y[test]).item()
    return first, test_nll, ref_nll, mse, feats, bins, y, model


def main():
    first, test_nll, ref_nll, mse, feats, bins, y, model = run(0)
    again = run(0)
    # per-bin target means: scatter_add_ of sums and counts, then gather back per sample
    sums = torch.zeros(5).scatter_add_(0, bins, y)
    counts = torch.zeros(5).scatter_add_(0, bins, torch.ones_like(y))
    bin_means = sums / counts
    per_sample = bin_means.gather(0, bins)
    curve = F.interpolate(bin_means.view(1, 1, -1), size=9, mode="linear", align_corners=True).view(-1)
    nearest = F.interpolate(bin_means.view(1, 1, -1), scale_factor=2, mode="nearest").view(-1)
    cum = torch.cumsum(counts, 0)
    w = model.mean.weight.detach().to(torch.float64)
    small = torch.tensor([[0.5, -1.25], [3.0, 1e-3]])
    print(json.dumps({
        "first_loss": first, "test_nll": test_nll, "ref_nll": ref_nll, "mse": mse,
        "reproducible": again[1] == test_nll and torch.equal(again[7].mean.weight, model.mean.weight),
        "feat_shape": list(feats.shape), "feat_dtype": str(feats.dtype).replace("torch.", ""),
        "w_dtype": str(w.dtype).replace("torch.", ""), "w_item_type": type(w[0, 0].item()).__name__,
        "bin_counts": counts.tolist(), "cum_counts": cum.to(torch.int64).tolist(),
        "bin_means": bin_means.tolist(), "per_sample_head": per_sample[:4].tolist(),
        "curve": curve.tolist(), "nearest": nearest.tolist(),
        "bins_dtype": str(bins.dtype).replace("torch.", ""),
        "repr_small": repr(small), "str_int": str(torch.arange(5)), "format": f"{torch.tensor(2.0 / 3):.3f}",
        "tolist_nested": small.tolist(), "repr_bool": repr(small > 0),
    }))


if __name__ == "__main__":
    main()
