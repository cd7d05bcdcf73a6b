# A siamese network (pytorch/examples siamese_network, reduced) on scikit-learn's digits: pairs of
# images, same digit or not; twin CNN towers, |f1 - f2| into a small head, BCELoss on a sigmoid output.
# Prints one JSON line: loss of the first epoch, of the last, and pair accuracy on held-out pairs.
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset


class SiameseNetwork(nn.Module):
    def __init__(self):
        super(SiameseNetwork, self).__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((2, 2)))
        self.fc = nn.Sequential(nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        self.sigmoid = nn.Sigmoid()

    def forward_once(self, x):
        output = self.cnn(x)
        return output.view(output.size()[0], -1)

    def forward(self, input1, input2):
        output1 = self.forward_once(input1)
        output2 = self.forward_once(input2)
        output = torch.abs(output1 - output2)
        return self.sigmoid(self.fc(output)), F.pairwise_distance(output1, output2)


class PairDataset(Dataset):
    def __init__(self, images, labels, seed):
        rng = np.random.default_rng(seed)
        self.images, self.labels = images, labels
        self.pairs = []
        by_class = [np.flatnonzero(labels == c) for c in range(10)]
        for i in range(len(labels)):
            if rng.random() < 0.5:
                j = rng.choice(by_class[labels[i]])
            else:
                j = rng.choice(np.flatnonzero(labels != labels[i]))
            self.pairs.append((i, int(j)))

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        i, j = self.pairs[index]
        target = torch.tensor(float(self.labels[i] == self.labels[j]), dtype=torch.float)
        return self.images[i], self.images[j], target


def main():
    torch.manual_seed(0)
    d = load_digits()
    images = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    labels = d.target
    train = PairDataset(images[:1400], labels[:1400], 0)
    test = PairDataset(images[1400:], labels[1400:], 1)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    model = SiameseNetwork()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    criterion = nn.BCELoss()
    losses = []
    for epoch in range(6):
        model.train()
        total = 0.0
        for images_1, images_2, targets in loader:
            optimizer.zero_grad()
            outputs, _ = model(images_1, images_2)
            loss = criterion(outputs.squeeze(), targets)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(targets)
        scheduler.step()
        losses.append(total / len(train))
    model.eval()
    correct = 0
    with torch.no_grad():
        for images_1, images_2, targets in DataLoader(test, batch_size=128):
            outputs, dist = model(images_1, images_2)
            pred = torch.where(outputs > 0.5, 1, 0)
            correct += pred.squeeze().eq(targets.view_as(pred.squeeze())).sum().item()
    print(json.dumps({"first_loss": losses[0], "last_loss": losses[-1], "accuracy": correct / len(test)}))


if __name__ == '__main__':
    main()
