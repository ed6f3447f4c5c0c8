"""The U-Net: encoder -> decoder -> head, logits at the input's exact height and width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from petseg.models.config import ModelConfig


class UNet(nn.Module):
    """Normalised images (N, 3, H, W) -> class logits (N, num_classes, H, W), any H and W.

    `.encoder` is exposed so training can give it a lower learning rate; with
    `freeze_encoder=True` its weights get no gradients and its BatchNorm statistics
    stay frozen even in `train()` mode, as a Keras base model with trainable=False.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: ModelConfig, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = decoder.make_head(config.num_classes)
        self.config = config
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "UNet":
        super().train(mode)
        if self.freeze_encoder:
            # Training a head on a frozen base must not drift its BatchNorm statistics.
            self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        input_size = images.shape[-2:]
        features = self.encoder(images)
        logits = self.head(self.decoder(features, input_size))
        if self.decoder.resizes_logits:
            logits = F.interpolate(logits, size=tuple(input_size), mode="bilinear", align_corners=False)
        return logits
