# A "production-style" DDP training script of the kind people copy between projects, on scikit-learn's
# digits: device/backend picked at run time, SyncBatchNorm on GPUs, parameter groups without weight decay for
# biases and norms, AdamW + warm-up then cosine (SequentialLR), autocast and GradScaler (disabled on
# the CPU, as such scripts do), unscale + clip_grad_norm_, gradient accumulation with no_sync(),
# DistributedSampler.set_epoch, metrics all-reduced, inference_mode evaluation, a rank-0 checkpoint
# with model/optimizer/scheduler/scaler state and a barrier, resumed by the second run; uneven last
# batches under model.join().  Rank 0 prints one JSON line.
# Run: torchrun --standalone --nproc-per-node 2 ddp_production.py CKPT   (distgraph-run -n 2 ...)
import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def get_args():
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--accum", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-2)
    return p.parse_args()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main():
    args = get_args()
    use_cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    n_train = 1400
    train_set = TensorDataset(x[:n_train], y[:n_train])
    test_set = TensorDataset(x[n_train:], y[n_train:])
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, pin_memory=use_cuda,
                        drop_last=False, num_workers=0)
    test_loader = DataLoader(test_set, batch_size=128,
                             sampler=DistributedSampler(test_set, shuffle=False, drop_last=False))

    model = Net()
    if use_cuda:                                    # (torch's SyncBatchNorm works on GPU modules only)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    model = DDP(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.AdamW(param_groups(model.module, 0.05), lr=args.lr, betas=(0.9, 0.99))
    steps_per_epoch = math.ceil(len(loader) / args.accum)
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=steps_per_epoch)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=(args.epochs - 1) * steps_per_epoch)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[steps_per_epoch])
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)

    start_epoch = 0
    if os.path.exists(args.checkpoint):
        ckpt = torch.load(args.checkpoint, map_location=device, weights_only=False)
        model.module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch = ckpt["epoch"] + 1
    end_epoch = start_epoch + (args.epochs if start_epoch == 0 else 1)

    lrs, losses, grad_norms = [], [], []
    t0 = time.perf_counter()
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        model.train()
        running = torch.zeros(2, device=device)        # loss sum, samples
        with model.join():
            for i, (xb, yb) in enumerate(loader):
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                last = (i + 1) % args.accum == 0 or i + 1 == len(loader)
                ctx = model.no_sync() if not last else torch.enable_grad()
                with ctx:
                    with torch.autocast(device_type=device.type, enabled=use_cuda):
                        out = model(xb)
                        loss = F.cross_entropy(out, yb, label_smoothing=0.05) / args.accum
                    scaler.scale(loss).backward()
                running += torch.tensor([loss.item() * args.accum * len(xb), len(xb)], device=device)
                if last:
                    scaler.unscale_(opt)
                    grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)))
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    sched.step()
                    lrs.append(opt.param_groups[0]["lr"])
        dist.all_reduce(running, op=dist.ReduceOp.SUM)
        losses.append((running[0] / running[1]).item())
        if rank == 0:
            torch.save({"model": model.module.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch},
                       args.checkpoint)
        dist.barrier()

    model.eval()
    correct = torch.zeros(2, dtype=torch.long, device=device)
    with torch.inference_mode():
        for xb, yb in test_loader:
            pred = model(xb.to(device)).argmax(dim=1)
            correct += torch.tensor([(pred == yb.to(device)).sum().item(), len(yb)], device=device)
    dist.all_reduce(correct)
    if use_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    mine = torch.cat([p.detach().flatten() for p in model.parameters()])
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    if rank == 0:
        print(json.dumps({
            "world_size": world, "start_epoch": start_epoch, "end_epoch": end_epoch,
            "accuracy": correct[0].item() / correct[1].item(), "n_test": int(correct[1].item()),
            "losses": losses, "lrs": lrs, "n_steps": len(lrs), "max_grad_norm": max(grad_norms),
            "ranks_agree": all(torch.equal(everyone[0], e) for e in everyone),
            "ckpt_keys": sorted(ckpt), "opt_state_keys": sorted(ckpt["optimizer"]),
            "opt_groups": [sorted(k for k in g if k != "params") for g in ckpt["optimizer"]["param_groups"]],
            "sched_keys": sorted(k for k in ckpt["scheduler"] if not k.startswith("_")),
            "model_keys": list(ckpt["model"])[:6], "n_model_keys": len(ckpt["model"]),
            "scaler_state": ckpt["scaler"], "seconds": elapsed}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
