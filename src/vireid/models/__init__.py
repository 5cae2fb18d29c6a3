"""Two-stream AGW ResNet (modality-specific stems, shared trunk), non-local blocks, GeM, BN neck.

`create_model` and `load_model` are the only builders and loaders of the network.
"""

from vireid.models.agw import ModelOutput, TwoStreamAGW, nonlocal_positions
from vireid.models.checkpoint import read_checkpoint, write_checkpoint
from vireid.models.factory import create_model, load_model, load_trained_weights, unwrap_model
from vireid.models.nonlocal_block import NonLocalBlock
from vireid.models.pooling import GeM, gem_pool

__all__ = ["ModelOutput", "TwoStreamAGW", "create_model", "load_model", "load_trained_weights", "unwrap_model",
           "read_checkpoint", "write_checkpoint", "nonlocal_positions", "NonLocalBlock", "GeM", "gem_pool"]
