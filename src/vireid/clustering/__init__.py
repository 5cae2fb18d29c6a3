"""Pseudo-label engine: kNN, k-reciprocal Jaccard distance, DBSCAN, memories and matching."""

from vireid._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "knn_search": ".knn",
        "jaccard_distance": ".jaccard",
        "jaccard_from_knn": ".jaccard",
        "dbscan_labels": ".dbscan",
        "cluster": ".dbscan",
        "ClusteringResult": ".dbscan",
        "cluster_centroids": ".memories",
        "kmeans_submemories": ".memories",
        "multi_memory_match": ".matching",
        "MatchResult": ".matching",
        "cluster_majority": ".quality",
        "modality_presence": ".quality",
        "majority_agreement": ".quality",
        "shared_label_ari": ".quality",
    },
)
