"""vireid: unsupervised visible-infrared person re-identification (MMM, ECCV 2024).

The public API, importable from the top level (each loaded on first use, so `import vireid` is fast):
`train`, `RunResult`, `open_dataset`, `register_reader`, `run_protocols`, `evaluate_ranking`,
`load_config`, `create_model`, `load_model`, `Embedder`, `search`, `export_onnx`, `Sample`.
`__all__` lists them; the API reference (docs/api.md) documents each.
"""

from vireid._lazy import lazy_exports

__version__ = "0.1.0"  # the one place of the version: pyproject.toml and `vireid --version` read it

# public name -> the module that defines it
_EXPORTS = {
    "train": ".engine.pipeline",
    "RunResult": ".engine.pipeline",
    "open_dataset": ".data.registry",
    "register_reader": ".data.registry",
    "run_protocols": ".evaluation.protocols",
    "export_onnx": ".export",
    "Embedder": ".inference",
    "search": ".inference",
    "load_config": ".config",
    "evaluate_ranking": ".evaluation.metrics",
    "create_model": ".models.factory",
    "load_model": ".models.factory",
    "Sample": ".data.records",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
