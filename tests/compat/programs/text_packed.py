# Which standard-library module does a line of source come from?  Characters of each line go through
# nn.Embedding(padding_idx=0), a custom Dataset + collate_fn with pad_sequence, pack_padded_sequence
# (enforce_sorted=False) into a bidirectional GRU, pad_packed_sequence back, then nn.MultiheadAttention
# with key_padding_mask and a masked mean (masked_fill, einsum); CrossEntropyLoss with label smoothing.
# Run: python text_packed.py   -- prints one JSON line of metrics.
import json
import os
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from torch.utils.data import DataLoader, Dataset

MODULES = ["argparse.py", "json/decoder.py", "csv.py"]


def load_lines():
    root = os.path.dirname(os.__file__)
    data = []
    for label, name in enumerate(MODULES):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if len(ln.strip()) >= 12]
        data += [(ln[:60], label) for ln in lines[:350]]
    return data


class Lines(Dataset):
    def __init__(self, items, vocab):
        self.items, self.vocab = items, vocab

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        text, label = self.items[i]
        return torch.tensor([self.vocab.get(c, 1) for c in text], dtype=torch.long), label


def collate(batch):
    seqs, labels = zip(*batch)
    lengths = torch.tensor([len(s) for s in seqs])
    return pad_sequence(list(seqs), batch_first=True, padding_value=0), lengths, torch.tensor(labels)


class Classifier(nn.Module):
    def __init__(self, vocab_size, n_classes, emb=24, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb, padding_idx=0)
        self.gru = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.attn = nn.MultiheadAttention(2 * hidden, num_heads=2, batch_first=True)
        self.out = nn.Linear(2 * hidden, n_classes)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        h, out_lengths = pad_packed_sequence(self.gru(packed)[0], batch_first=True)
        pad = torch.arange(h.size(1)).unsqueeze(0) >= out_lengths.unsqueeze(1)
        a, weights = self.attn(h, h, h, key_padding_mask=pad)
        a = a.masked_fill(pad.unsqueeze(-1), 0.0)
        pooled = torch.einsum("btd,b->bd", a, 1.0 / out_lengths.to(a.dtype))
        return self.out(pooled), weights


def evaluate(model, loader):
    model.eval()
    correct, total, pad_weight = 0, 0, 0.0
    with torch.no_grad():
        for x, lengths, y in loader:
            logits, w = model(x, lengths)
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
            pad = torch.arange(x.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)
            pad_weight = max(pad_weight, w.masked_select(pad.unsqueeze(1).expand_as(w)).abs().sum().item()
                             if pad.any() else 0.0)
    return correct / total, pad_weight


def main():
    torch.manual_seed(0)
    random.seed(0)
    data = load_lines()
    random.shuffle(data)
    chars = sorted({c for text, _ in data for c in text})
    vocab = {c: i + 2 for i, c in enumerate(chars)}     # 0 = padding, 1 = unknown
    split = int(0.8 * len(data))
    train = DataLoader(Lines(data[:split], vocab), batch_size=32, shuffle=True, collate_fn=collate, drop_last=True)
    test = DataLoader(Lines(data[split:], vocab), batch_size=64, collate_fn=collate)
    model = Classifier(len(vocab) + 2, len(MODULES))
    pad_row_zero = bool((model.embed.weight[0] == 0).all())
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    start_acc, _ = evaluate(model, test)
    for epoch in range(5):
        model.train()
        for x, lengths, y in train:
            logits, _ = model(x, lengths)
            loss = criterion(logits, y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
    acc, pad_weight = evaluate(model, test)
    x, lengths, y = next(iter(test))
    packed = pack_padded_sequence(model.embed(x), lengths, batch_first=True, enforce_sorted=False)
    print(json.dumps({
        "start_acc": start_acc, "accuracy": acc, "n_lines": len(data), "vocab": len(vocab),
        "pad_attention_weight": pad_weight, "pad_row_zero": pad_row_zero,
        "pad_grad_zero": bool((model.embed.weight.grad[0] == 0).all()),
        "pad_row_still_zero": bool((model.embed.weight[0] == 0).all()),
        "batch_sizes_sum": int(packed.batch_sizes.sum()), "lengths_sum": int(lengths.sum()),
        "batch_sizes_dtype": str(packed.batch_sizes.dtype).replace("torch.", ""),
        "padded_shape": list(x.shape), "last_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
