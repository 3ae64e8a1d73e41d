"""The CNN1D-LSTM ECG anomaly model (network modules only).

Input contract (see ``config.json`` written beside the weights): one window is
``[2000, 3]`` = 10 s at 200 Hz of leads I, II, V2 in that order, in mV, z-scored per
window and per lead by the caller (``inference.normalise``). The network returns one
logit per window; ``sigmoid(logit)`` is the anomaly probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv1d -> BatchNorm1d -> ReLU -> MaxPool1d: one stage of downsampling.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature maps in and out.
    kernel_size : int
        Odd kernel length in samples ("same" padding).
    stride : int
        Convolution stride.
    pool : int
        Max-pooling factor after the activation (1 disables pooling).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, pool: int
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        )
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool: nn.Module = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, time] -> [batch, out_channels, time / (stride * pool)]``."""
        return self.pool(self.act(self.norm(self.conv(x))))


class CNN1DLSTM(nn.Module):
    """Convolutional front end, a small LSTM over the shortened sequence, one logit per ECG.

    The convolutions shorten 2000 samples to about 60 steps (each step ~160 ms, a fraction
    of a beat) so the LSTM, which sees rhythm across beats, stays cheap.

    Parameters
    ----------
    in_channels : int
        Number of leads (3: I, II, V2).
    conv_channels : sequence of int
        Output channels of each convolution block.
    kernel_sizes, strides, pools : sequence of int
        Per-block kernel length, stride and max-pool factor (same length as
        ``conv_channels``).
    lstm_hidden : int
        LSTM hidden size per direction.
    lstm_layers : int
        Stacked LSTM layers.
    bidirectional : bool
        Run the LSTM both ways.
    dropout : float
        Dropout before the classifier.

    Notes
    -----
    ``forward`` takes ``x`` of shape ``[batch, time, leads]`` (time-major per ECG, as
    clients send it: ``[N, 2000, 3]``), float32, already z-scored per window and per lead,
    and returns logits of shape ``[batch]``. ``predict_proba`` returns probabilities.
    """

    def __init__(
        self,
        in_channels: int = 3,
        conv_channels: Sequence[int] = (16, 32, 48, 64),
        kernel_sizes: Sequence[int] = (7, 7, 5, 5),
        strides: Sequence[int] = (2, 1, 1, 1),
        pools: Sequence[int] = (2, 2, 2, 2),
        lstm_hidden: int = 48,
        lstm_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not len(conv_channels) == len(kernel_sizes) == len(strides) == len(pools):
            raise ValueError("conv_channels, kernel_sizes, strides and pools differ in length")
        self.blocks = nn.ModuleList()
        prev = in_channels
        for ch, k, s, p in zip(conv_channels, kernel_sizes, strides, pools, strict=True):
            self.blocks.append(ConvBlock(prev, ch, k, s, p))
            prev = ch
        self.lstm = nn.LSTM(
            input_size=prev,
            hidden_size=lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        features = lstm_hidden * (2 if bidirectional else 1)
        # Mean and max over time of the LSTM outputs: rhythm evidence can sit anywhere
        # in the window (one premature beat), or everywhere (a fast rate).
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch]`` for ``x`` of shape ``[batch, time, leads]``."""
        h = x.transpose(1, 2)  # [B, C, T] for Conv1d
        for block in self.blocks:
            h = block(h)
        out, _ = self.lstm(h.transpose(1, 2))  # [B, T', F]
        pooled = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)
        return self.head(self.dropout(pooled)).squeeze(1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly probabilities ``[batch]`` in [0, 1] (no gradients)."""
        return torch.sigmoid(self.forward(x))
