# PyTorch's classic MNIST example (pytorch/examples mnist/main.py, reduced), written against torch's API,
# on scikit-learn's bundled 8x8 digits upscaled to 16x16. Prints one JSON line with the final metrics.
import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(32 * 6 * 6, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
    return loss.item()


@torch.no_grad()
def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    for data, target in test_loader:
        data, target = data.to(device), target.to(device)
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction='sum').item()
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= len(test_loader.dataset)
    return test_loss, correct / len(test_loader.dataset)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--save', default=None)
    args = parser.parse_args()
    torch.manual_seed(1)
    if torch.accelerator.is_available():
        device = torch.accelerator.current_accelerator()
    else:
        device = torch.device("cpu")

    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((2, 2)))[:, None].astype(np.float32)   # 16x16
    x = (x - 0.1307) / 0.3081
    y = digits.target.astype(np.int64)
    train_ds = TensorDataset(torch.from_numpy(x[:1500]), torch.from_numpy(y[:1500]))
    test_ds = TensorDataset(torch.tensor(x[1500:]), torch.tensor(y[1500:]))
    train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_ds, batch_size=256)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, args.epochs + 1):
        last = train(model, device, train_loader, optimizer, epoch)
        scheduler.step()
    test_loss, acc = test(model, device, test_loader)
    if args.save:
        torch.save(model.state_dict(), args.save)
        model2 = Net()
        model2.load_state_dict(torch.load(args.save, weights_only=True))
        assert test(model2, device, test_loader)[1] == acc
    print(json.dumps({"test_loss": test_loss, "accuracy": acc, "last_train_loss": last,
                      "lr": scheduler.get_last_lr()[0]}))


if __name__ == '__main__':
    main()
