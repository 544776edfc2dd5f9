"""Tiny backbones the tests share."""

import torch

from qbench.backbones import BACKBONES, build_backbone


def tiny_family(kind: str, shaken: bool = False):
    """The tiny twin of a backbone family (random, seed 0); `shaken`: its weights moved off their init, so that
    every decay, skip and bias differs per channel."""
    torch.manual_seed(0)
    backbone = build_backbone(BACKBONES[kind].tiny).eval()
    if shaken:
        with torch.no_grad():
            for parameter in backbone.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return backbone
