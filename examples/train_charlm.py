"""Train a small GPT-style character language model on the Python standard library's own source code.

What it shows: a transformer trained end to end — token and learned position
embeddings, pre-norm blocks of causal self-attention (``F.scaled_dot_product_attention``
with ``is_causal=True``) and a GELU MLP, LayerNorm, AdamW with decoupled weight
decay on the matrices only, linear warm-up then cosine decay (``SequentialLR``),
DistributedDataParallel across ranks, checkpoints and metrics. The corpus is
real text found on every machine with Python: the ``*.py`` files next to the
``os`` module, read at run time in sorted order.

    python examples/train_charlm.py                           # one process, about 2 minutes on 2 CPU cores
    distgraph-run -n 2 examples/train_charlm.py               # 2 ranks, DistributedDataParallel
    mpirun -n 2 python examples/train_charlm.py --checkpoint-dir ckpt --log-dir runs/lm
    mpirun -n 2 python examples/train_charlm.py --checkpoint-dir ckpt --resume    # after a stop or crash

It checks its own result: the validation loss (nats per character) must end at
least ``--margin`` (0.5) below the unigram entropy of the corpus, the loss of
the best model that ignores context. It prints a sample of generated code.
"""
import argparse
import glob
import math
import os
import signal
import time

import numpy as np
from tqdm import tqdm

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP
from distgraph.utils.metrics import MetricsLogger
from distgraph.utils.training import CheckpointManager, device_for_rank


# ---------------------------------------------------------------------- model
class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, T, C) -> (B, heads, T, C / heads)
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    def __init__(self, vocab, block_size, dim=128, layers=2, heads=4, dropout=0.0):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(block_size, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        pos = dg.arange(t, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------- data
def stdlib_corpus(max_chars):
    """The standard library's top-level ``*.py`` files, sorted by name, joined up to ``max_chars`` characters."""
    root = os.path.dirname(os.__file__)
    parts, size = [], 0
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            break
    return "".join(parts)[:max_chars]


def unigram_entropy(codes, vocab):
    """``-sum p log p`` (nats) of the character frequencies: the loss of the best context-free model."""
    p = np.bincount(codes, minlength=vocab) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def batch(data, block, size, rng):
    """``size`` random windows of ``block + 1`` characters: inputs and next-character targets."""
    starts = rng.integers(0, len(data) - block - 1, size)
    win = data[starts[:, None] + np.arange(block + 1)]
    return win[:, :-1], win[:, 1:]


def evaluate(model, val, block, batch_size, batches, device, rank, world):
    """Mean cross-entropy (nats/char) over ``batches`` fixed windows of the validation text, all ranks together.

    The plain module, not DDP: ranks may score different numbers of batches.
    """
    model.eval()
    starts = np.linspace(0, len(val) - block - 1, batches * batch_size).astype(np.int64)
    total = 0.0
    with dg.no_grad():
        for i in range(rank, batches, world):
            s = starts[i * batch_size:(i + 1) * batch_size]
            win = val[s[:, None] + np.arange(block + 1)]
            logits = model(dg.tensor(win[:, :-1], device=device))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), dg.tensor(win[:, 1:].reshape(-1), device=device))
            total += loss.item()
    model.train()
    acc = dg.tensor([total], dtype=dg.float64)
    if world > 1:
        comm.all_reduce(acc)
    return acc.item() / batches


def sample(model, chars, prompt, n, temperature, device, seed):
    """Generate ``n`` characters after ``prompt`` (a fixed seed: the same sample for the same model)."""
    stoi = {c: i for i, c in enumerate(chars)}
    ids = [stoi[c] for c in prompt if c in stoi]
    rng = np.random.default_rng(seed)
    model.eval()
    with dg.no_grad():
        for _ in range(n):
            ctx = dg.tensor(np.array([ids[-model.block_size:]]), device=device)
            logits = model(ctx)[0, -1].cpu().numpy().astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            ids.append(int(rng.choice(len(p), p=p / p.sum())))
    model.train()
    return "".join(chars[i] for i in ids)


# ------------------------------------------------------------------- training
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus-chars", type=int, default=1_000_000, help="characters of stdlib source to read")
    p.add_argument("--block-size", type=int, default=64, help="context length")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=400, help="total optimizer steps")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training text (overrides --steps)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per rank")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of the run)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (rank r uses GPU local_rank)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--keep", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--log-dir", help="metrics as CSV / JSON lines (and TensorBoard when installed)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--sample-chars", type=int, default=300)
    p.add_argument("--margin", type=float, default=0.5,
                   help="required gap (nats/char) between unigram entropy and final validation loss; <0: no check")
    p.add_argument("--crash-at-step", type=int, default=None, help=argparse.SUPPRESS)  # tests: SIGKILL rank 0
    args = p.parse_args(argv)
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir")
    return args


def main(argv=None):
    args = parse_args(argv)
    comm.init_process_group()  # a world of one under plain python
    rank, world = comm.get_rank(), comm.get_world_size()
    device = device_for_rank(args.device)
    dtype = dg.float64 if args.dtype == "float64" else dg.float32

    text = stdlib_corpus(args.corpus_chars)
    chars = sorted(set(text))
    codes = np.array([{c: i for i, c in enumerate(chars)}[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(codes))
    train, val = codes[:split], codes[split:]
    entropy = unigram_entropy(codes, len(chars))

    dg.manual_seed(args.seed)
    model = CharGPT(len(chars), args.block_size, args.dim, args.layers, args.heads, args.dropout)
    model.to(device=device, dtype=dtype)
    net = DDP(model) if world > 1 else model
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = dg.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    tokens_per_step = args.batch_size * args.block_size * world
    total = args.steps if args.epochs is None else max(1, args.epochs * len(train) // tokens_per_step)
    warmup = args.warmup if args.warmup is not None else max(1, total // 20)
    sched = dg.optim.lr_scheduler.SequentialLR(opt, [
        dg.optim.lr_scheduler.LinearLR(opt, start_factor=1e-2, end_factor=1.0, total_iters=warmup),
        dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warmup), eta_min=args.lr / 10),
    ], milestones=[warmup])

    ckpt = CheckpointManager(args.checkpoint_dir, keep=args.keep) if args.checkpoint_dir else None
    step = 0
    if args.resume:
        state = ckpt.restore(model=model, optimizer=opt, scheduler=sched)
        step = state["step"] if state else 0
        if rank == 0:
            print(f"resuming from step {step}" if state else "no checkpoint to resume from: starting afresh",
                  flush=True)
    metrics = MetricsLogger(args.log_dir, purge_step=step if args.resume else None) if args.log_dir else None

    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"corpus: {len(text):,} characters of the standard library ({len(chars)} distinct), unigram entropy "
              f"{entropy:.3f} nats/char; model {n_params / 1e3:.0f}K parameters; {world} rank(s), {total} steps "
              f"of {args.batch_size}x{args.block_size} characters per rank, {args.dtype} on {device}", flush=True)
    bar = tqdm(total=total, initial=step, disable=rank != 0, unit="step", dynamic_ncols=True)
    start, start_step, loss_value, val_loss = time.perf_counter(), step, float("nan"), None
    while step < total:
        # A generator per (seed, step, rank): the windows of a step need no saved state to resume.
        xb, yb = batch(train, args.block_size, args.batch_size, np.random.default_rng([args.seed, step, rank]))
        logits = net(dg.tensor(xb, device=device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), dg.tensor(yb.reshape(-1), device=device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_value = loss.item()
        rate = (step - start_step) * args.batch_size * world / (time.perf_counter() - start)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", samples_s=f"{rate:.0f}")
        if metrics and (step % args.log_every == 0 or step == total):
            metrics.log(step, loss=loss_value, lr=opt.param_groups[0]["lr"])
        if step % args.eval_every == 0 or step == total:
            val_loss = evaluate(model, val, args.block_size, args.batch_size, args.eval_batches, device, rank, world)
            if metrics:
                metrics.log(step, prefix="val/", loss=val_loss)
            if rank == 0:
                bar.write(f"step {step}: train loss {loss_value:.4f}, validation loss {val_loss:.4f} nats/char")
        if ckpt and (step % args.checkpoint_every == 0 or step == total):
            ckpt.save(step, model=model, optimizer=opt, scheduler=sched)
        if args.crash_at_step == step and rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash, not an orderly exit
    bar.close()
    seconds = time.perf_counter() - start
    if val_loss is None:  # resumed at the end: nothing ran
        val_loss = evaluate(model, val, args.block_size, args.batch_size, args.eval_batches, device, rank, world)
    if metrics:
        metrics.close()
    comm.destroy_process_group()
    if rank != 0:
        return
    if args.sample_chars:
        print("sample:\n" + sample(model, chars, "def ", args.sample_chars, 0.8, device, args.seed) + "\n", flush=True)
    done = step - start_step
    gap = entropy - val_loss
    print(f"summary: char-LM, {world} rank(s), {step} steps, final train loss {loss_value:.6f}, validation loss "
          f"{val_loss:.4f} nats/char vs unigram entropy {entropy:.4f} ({gap:.2f} below; "
          f"{math.exp(val_loss):.2f} perplexity), {done / seconds if done and seconds else 0.0:.2f} steps/s", flush=True)
    if args.margin >= 0 and gap < args.margin:
        raise SystemExit(f"validation loss {val_loss:.4f} is not {args.margin} nats below the unigram entropy "
                         f"{entropy:.4f}")


if __name__ == "__main__":
    main()
