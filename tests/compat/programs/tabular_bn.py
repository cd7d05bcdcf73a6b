# A tabular classifier the way people write one (breast-cancer data from scikit-learn): feature
# statistics kept in a register_buffer, a ModuleDict of blocks, a ParameterList of per-block scales,
# BatchNorm1d + Dropout switched by model.train()/eval(), weights set with model.apply(init_fn),
# AdamW with two param groups (no weight decay on biases and norms), clip_grad_norm_, OneCycleLR,
# and early stopping that keeps copy.deepcopy(model.state_dict()) and loads it back.
# Run: python tabular_bn.py   -- prints one JSON line of metrics.
import copy
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer


class Net(nn.Module):
    def __init__(self, mean, std, hidden=32):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.blocks = nn.ModuleDict({
            "inp": nn.Sequential(nn.Linear(mean.numel(), hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2)),
            "mid": nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2)),
        })
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(hidden)) for _ in self.blocks])
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        x = (x - self.mean) / self.std
        for scale, name in zip(self.scales, ["inp", "mid"]):
            x = self.blocks[name](x) * scale
        return self.head(x).squeeze(-1)


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y).item()
        acc = ((logits > 0).float() == y).float().mean().item()
    return loss, acc


def main():
    torch.manual_seed(0)
    data = load_breast_cancer()
    rng = np.random.RandomState(0)
    order = rng.permutation(len(data.target))
    x = torch.tensor(data.data[order], dtype=torch.float32)
    y = torch.tensor(data.target[order]).to(torch.float32)
    x_train, y_train = x[:400], y[:400]
    x_val, y_val = x[400:480], y[400:480]
    x_test, y_test = x[480:], y[480:]

    model = Net(x_train.mean(0), x_train.std(0) + 1e-6)
    model.apply(init_weights)
    kinds = sorted({type(m).__name__ for _, m in model.named_modules()})
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    epochs, batch = 12, 32
    steps = (len(x_train) + batch - 1) // batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.02, epochs=epochs, steps_per_epoch=steps)

    start_loss, start_acc = evaluate(model, x_test, y_test)
    best, best_state, bad, lrs, norms = float("inf"), None, 0, [], []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), batch):
            idx = perm[i:i + batch]
            loss = F.binary_cross_entropy_with_logits(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)))
            optimizer.step()
            scheduler.step()
            lrs.append([g["lr"] for g in optimizer.param_groups])
        val_loss, _ = evaluate(model, x_val, y_val)
        if val_loss < best - 1e-4:
            best, best_state, bad = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= 4:
                break
    last_state_mean = model.mean.clone()
    model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(model, x_test, y_test)
    # BatchNorm's running statistics are part of the state, and model.eval() uses them
    bn = model.blocks["inp"][1]
    print(json.dumps({
        "start_loss": start_loss, "start_acc": start_acc, "test_loss": test_loss, "test_acc": test_acc,
        "best_val_loss": best, "lrs": lrs, "epochs_run": epoch + 1,
        "max_clipped_norm_seen": max(norms), "n_steps": len(norms),
        "state_keys": list(best_state.keys()),
        "buffer_names": [n for n, _ in model.named_buffers()],
        "module_kinds": kinds, "n_params": sum(p.numel() for p in model.parameters()),
        "bn_tracked": int(bn.num_batches_tracked), "bn_var_positive": bool((bn.running_var > 0).all()),
        "buffer_kept": bool(torch.equal(last_state_mean, model.mean)),
        "training_flag_after_eval": model.training,
        "group_wd": [g["weight_decay"] for g in optimizer.param_groups],
    }))


if __name__ == "__main__":
    main()
