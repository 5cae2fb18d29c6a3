"""Ranking metrics (CMC, mAP, mINP) and the multi-trial protocol runner."""

from vireid._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "evaluate_ranking": ".metrics",
        "RankingResult": ".metrics",
        "run_protocols": ".protocols",
        "format_table": ".report",
    },
)
