"""The CPU demo: synthetic visible-infrared people, stand-in start weights, the whole pipeline.

Importing this package registers the `synthetic` start weights (`model.pretrained: synthetic`):
supervised pre-training on other synthetic people's visible images, built once and cached. The
engine never imports the demo; the demo uses the engine like any user would.
"""

from vireid.config import resolve_cache_dir
from vireid.demo.pretrain import synthetic_pretrained_weights
from vireid.engine.start_weights import register_start_weights

register_start_weights("synthetic", lambda cfg: synthetic_pretrained_weights(cfg, resolve_cache_dir(cfg)))
