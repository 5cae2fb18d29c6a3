"""Two-stream AGW ResNet (modality-specific stems, shared trunk), non-local blocks, GeM, BN neck."""

from vireid.models.agw import ModelOutput, TwoStreamAGW, build_model, nonlocal_positions
from vireid.models.nonlocal_block import NonLocalBlock
from vireid.models.pooling import GeM, gem_pool

__all__ = ["ModelOutput", "TwoStreamAGW", "build_model", "nonlocal_positions", "NonLocalBlock", "GeM", "gem_pool"]
