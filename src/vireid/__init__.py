"""vireid: unsupervised visible-infrared person re-identification (MMM, ECCV 2024)."""

from vireid._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Sample": ".data.records",
        "Embedder": ".inference",
        "search": ".inference",
        "load_config": ".config",
        "evaluate_ranking": ".evaluation.metrics",
    },
)
