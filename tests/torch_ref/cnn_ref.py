"""The residual CNN of troupe's `model.kind = cnn`, in PyTorch, written from the contract in models/cnn_layers.h.

stem: conv 3x3 (1 -> C0, padding 1, stride model.cnn_stem_stride, no bias) -> BatchNorm2d -> ReLU; then the stages of model.cnn_channels,
stage s holding model.cnn_blocks[s] residual blocks (the first block of every stage after the first has
stride 2); block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = identity, or conv 1x1 with
the block's stride -> BatchNorm2d when the shape changes; head: global average pooling -> Linear(C_last, 10).
BatchNorm2d has torch's defaults (eps 1e-5, momentum 0.1). Parameter and buffer names: stem.conv.weight,
stem.bn.*, blocks.{i}.conv1.weight, blocks.{i}.bn1.*, ..., blocks.{i}.shortcut.conv.weight,
blocks.{i}.shortcut.bn.*, fc.weight, fc.bias.
"""
import torch.nn as nn
import torch.nn.functional as F


class ConvBn(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ConvBn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):                                               # x: [B, cin, H, W]
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))         # [B, cout, H/stride, W/stride]
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, channels, blocks, stem_stride=1, classes=10):
        super().__init__()
        assert len(channels) == len(blocks), "model.cnn_blocks needs one entry per model.cnn_channels entry"
        self.stem = ConvBn(1, channels[0], 3, stem_stride)
        layers, cin = [], channels[0]
        for s, (cout, count) in enumerate(zip(channels, blocks)):
            for b in range(count):
                layers.append(Block(cin, cout, 2 if s > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x, targets):                                      # x: [B, 784] float in [0, 1]
        x = F.relu(self.stem(x.view(x.shape[0], 1, 28, 28)))               # [B, C0, 28 / stem stride, ...]
        for block in self.blocks:
            x = block(x)
        logits = self.fc(x.mean(dim=(2, 3)))                              # [B, classes]
        return F.cross_entropy(logits, targets)
