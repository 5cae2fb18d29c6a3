"""Pictures of a run: CMC curves, training curves, ranked lists, t-SNE of the two modalities; `write_report`
puts them with the run's tables into one HTML page."""

from vireid._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "plot_cmc": ".plots",
        "plot_training_curves": ".curves",
        "plot_ranked_lists": ".plots",
        "plot_tsne": ".plots",
        "plot_search_results": ".plots",
        "write_report": ".report",
    },
)
