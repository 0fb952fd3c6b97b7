"""The stacked LSTM language model of troupe's `model.kind = lstm`, in PyTorch, from the contract in models/lstm_layers.h.

embedding: nn.Embedding(vocab, H); lstm: nn.LSTM(H, H, num_layers=model.n_layer, batch_first=True) with its
two bias vectors and gate order i, f, g, o; head: nn.Linear(H, vocab); H = model.n_embd. Every batch row is an
independent sequence of model.block_size bytes run from zero state (truncated back-propagation: no state
carried between batches). Loss: mean cross-entropy over every token. Parameter names: embedding.weight,
lstm.weight_ih_l{k}, lstm.weight_hh_l{k}, lstm.bias_ih_l{k}, lstm.bias_hh_l{k}, head.weight, head.bias.
"""
import torch.nn as nn
import torch.nn.functional as F


class LstmLM(nn.Module):
    def __init__(self, n_layer, hidden, vocab_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=n_layer, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def logits(self, idx):                                              # idx: [B, T] int64
        y, _ = self.lstm(self.embedding(idx))                           # zero initial state; y: [B, T, H]
        return self.head(y)                                             # [B, T, vocab]

    def forward(self, idx, targets):
        logits = self.logits(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
