# The torch.utils.data toolbox on scikit-learn's digits: TensorDataset, random_split with a seeded
# generator, Subset, a custom Dataset with a collate_fn, WeightedRandomSampler for an imbalanced
# subset, DataLoader with shuffle/drop_last; CrossEntropyLoss with class weights and label smoothing;
# SequentialLR(LambdaLR warm-up, CosineAnnealingWarmRestarts) and ReduceLROnPlateau on a second
# optimizer; a checkpoint dict (model, optimizer, scheduler, epoch) saved with torch.save, then
# training resumed from torch.load; evaluation under torch.inference_mode with argmax, topk and a
# confusion matrix made with torch.bincount.
# Run: python data_pipeline.py CHECKPOINT_PATH   -- prints one JSON line of metrics.
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, WeightedRandomSampler, random_split


class Jittered(Dataset):
    """Wraps a dataset of (image, label) and returns dicts; the noise makes the collate_fn matter."""

    def __init__(self, base, noise):
        self.base, self.noise = base, noise

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return {"image": x + self.noise * torch.randn(x.shape), "label": y}


def collate(items):
    return torch.stack([it["image"] for it in items]), torch.tensor([int(it["label"]) for it in items])


def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model, loader):
    model.eval()
    preds, labels, top3 = [], [], 0
    with torch.inference_mode():
        for x, y in loader:
            out = model(x)
            preds.append(out.argmax(dim=1))
            labels.append(y)
            top3 += (out.topk(3, dim=1).indices == y.unsqueeze(1)).any(dim=1).sum().item()
    preds, labels = torch.cat(preds), torch.cat(labels)
    confusion = torch.bincount(labels * 10 + preds, minlength=100).reshape(10, 10)
    return (preds == labels).float().mean().item(), top3 / len(labels), confusion


def train_epoch(model, loader, criterion, optimizer, scheduler=None):
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / n


def main():
    ckpt_path = sys.argv[1]
    torch.manual_seed(0)
    d = load_digits()
    full = TensorDataset(torch.tensor(d.images / 16.0, dtype=torch.float32), torch.tensor(d.target))
    train_set, val_set, test_set = random_split(full, [0.6, 0.2, 0.2], generator=torch.Generator().manual_seed(42))
    split_sizes = [len(train_set), len(val_set), len(test_set)]
    split_head = [int(i) for i in test_set.indices[:5]]

    # make the training set imbalanced (keep a fifth of the odd digits), then rebalance it with a sampler
    labels = torch.stack([train_set[i][1] for i in range(len(train_set))])
    keep = [i for i in range(len(train_set)) if labels[i] % 2 == 0 or i % 5 == 0]
    imbalanced = Subset(train_set, keep)
    kept_labels = labels[keep]
    counts = torch.bincount(kept_labels, minlength=10)
    weights = (1.0 / counts.float())[kept_labels]
    sampler = WeightedRandomSampler(weights, num_samples=len(keep), replacement=True)
    train_loader = DataLoader(Jittered(imbalanced, 0.05), batch_size=32, sampler=sampler,
                              collate_fn=collate, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=64)
    test_loader = DataLoader(test_set, batch_size=64, shuffle=False)
    sampled = torch.cat([y for _, y in train_loader])
    odd_share_sampled = (sampled % 2 == 1).float().mean().item()
    odd_share_kept = (kept_labels % 2 == 1).float().mean().item()

    class_weights = counts.sum() / (10.0 * counts.float())
    criterion = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=0.1)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    steps = len(train_loader)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (step + 1) / steps)
    restarts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=steps, T_mult=2, eta_min=1e-3)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, restarts], milestones=[steps])
    start_acc, _, _ = evaluate(model, test_loader)

    lrs, losses = [], []
    for epoch in range(3):
        losses.append(train_epoch(model, train_loader, criterion, optimizer, scheduler))
        lrs.append(optimizer.param_groups[0]["lr"])
    torch.save({"epoch": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "losses": losses}, ckpt_path)
    acc_at_save, _, _ = evaluate(model, test_loader)

    # resume in a fresh model and optimizer, as a restarted job would
    ckpt = torch.load(ckpt_path)
    model = make_model()
    model.load_state_dict(ckpt["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    momentum_restored = all("momentum_buffer" in s for s in optimizer.state.values()) and len(optimizer.state) == 4
    acc_loaded, _, _ = evaluate(model, test_loader)
    lr_loaded = optimizer.param_groups[0]["lr"]

    # ReduceLROnPlateau on the validation loss for the rest of the run
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0, threshold=0.05)
    plateau_lrs, val_losses = [], []
    for epoch in range(ckpt["epoch"], ckpt["epoch"] + 4):
        losses.append(train_epoch(model, train_loader, criterion, optimizer))
        model.eval()
        with torch.no_grad():
            val = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in val_loader) / len(val_set)
        val_losses.append(val)
        plateau.step(val)
        plateau_lrs.append(optimizer.param_groups[0]["lr"])

    acc, top3, confusion = evaluate(model, test_loader)
    print(json.dumps({
        "split_sizes": split_sizes, "split_head": split_head, "start_acc": start_acc, "accuracy": acc,
        "top3": top3, "acc_at_save": acc_at_save, "acc_loaded": acc_loaded, "lr_loaded": lr_loaded,
        "momentum_restored": momentum_restored, "losses": losses, "lrs": lrs, "val_losses": val_losses,
        "plateau_lrs": plateau_lrs, "confusion_sum": int(confusion.sum()),
        "confusion_diag": int(confusion.diag().sum()), "confusion_shape": list(confusion.shape),
        "confusion_dtype": str(confusion.dtype), "class_counts": counts.tolist(),
        "odd_share_kept": odd_share_kept, "odd_share_sampled": odd_share_sampled,
        "n_batches": steps, "scheduler_keys": sorted(ckpt["scheduler"].keys()),
    }))


if __name__ == "__main__":
    main()
