# The "RNN on MNIST" tutorial pattern (rows of an image as a sequence), on scikit-learn's digits:
# a 2-layer GRU/LSTM/RNN with batch_first=True, CrossEntropyLoss, `torch.max(outputs.data, 1)`.
# Prints one JSON line with the test accuracy.
import argparse
import json

import torch
import torch.nn as nn
from sklearn.datasets import load_digits


class RNN(nn.Module):
    def __init__(self, kind, input_size, hidden_size, num_layers, num_classes):
        super(RNN, self).__init__()
        self.hidden_size, self.num_layers, self.kind = hidden_size, num_layers, kind
        self.rnn = getattr(nn, kind)(input_size, hidden_size, num_layers, batch_first=True,
                                     bidirectional=kind == "GRU")
        self.fc = nn.Linear(hidden_size * (2 if kind == "GRU" else 1), num_classes)

    def forward(self, x):
        d = 2 if self.kind == "GRU" else 1
        h0 = torch.zeros(self.num_layers * d, x.size(0), self.hidden_size).to(x.device)
        if self.kind == "LSTM":
            c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size).to(x.device)
            out, _ = self.rnn(x, (h0, c0))
        else:
            out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1, :])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", default="LSTM")
    args = parser.parse_args()
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
    model = RNN(args.kind, 8, 48, 2, 10)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(8):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), 100):
            idx = perm[i:i + 100]
            outputs = model(x_train[idx])
            loss = criterion(outputs, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        outputs = model(x_test)
        _, predicted = torch.max(outputs.data, 1)
        correct = (predicted == y_test).sum().item()
    print(json.dumps({"accuracy": correct / y_test.size(0), "last_loss": loss.item()}))


if __name__ == '__main__':
    main()
