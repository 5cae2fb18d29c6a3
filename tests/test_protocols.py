"""The protocol runner, the results table and feature-file evaluation."""

import numpy as np
import pytest
import torch

from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.errors import ConfigError, FeatureFileError
from vireid.evaluation.feature_file import evaluate_feature_file, load_feature_file
from vireid.evaluation.protocols import run_protocols
from vireid.evaluation.report import format_table


def loop_metrics(query_feats, gallery_feats, q_pids, g_pids, q_cams, g_cams, protocol):
    """Rank-1/5/10/20, mAP, mINP by a per-query loop from METHOD §7 (cosine distance)."""
    dist = 1.0 - np.asarray(query_feats, dtype=np.float64) @ np.asarray(gallery_feats, dtype=np.float64).T
    firsts, aps, inps = [], [], []
    for i in range(len(q_pids)):
        listed = [j for j in np.argsort(dist[i], kind="stable")
                  if not (protocol == "sysu" and q_cams[i] == 3 and g_cams[j] == 2)
                  and not (protocol == "llcm" and g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [k for k, j in enumerate(listed, start=1) if g_pids[j] == q_pids[i]]
        if not hits:
            continue
        aps.append(np.mean([(n + 1) / pos for n, pos in enumerate(hits)]))
        inps.append(len(hits) / hits[-1])
        if protocol == "regdb":
            firsts.append(hits[0])
        else:
            ranked = list(dict.fromkeys(g_pids[j] for j in listed))
            firsts.append(ranked.index(q_pids[i]) + 1)
    out = {f"rank{k}": float(np.mean([f <= k for f in firsts])) for k in (1, 5, 10, 20)}
    return {**out, "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}


class FakeDataset:
    """Stands in for a reader: fixed protocols and trials, feature of each image from its path."""

    def __init__(self, splits, metric_protocol):
        self.splits = splits
        self.metric_protocol = metric_protocol

    def evaluation_splits(self, trials=10):
        return {name: pairs[:trials] for name, pairs in self.splits.items()}


def sample(i, pid, camid, modality):
    return Sample(f"/data/{modality}/{i:04d}.jpg", pid, camid, modality)


def random_dataset(seed, metric_protocol):
    rng = np.random.default_rng(seed)
    query = [sample(i, int(rng.integers(0, 6)), int(rng.choice([3, 6])), INFRARED) for i in range(25)]
    pool = [sample(i, int(rng.integers(0, 6)), int(rng.choice([1, 2, 4, 5])), VISIBLE) for i in range(40)]
    trials = [[pool[j] for j in sorted(rng.choice(40, 20, replace=False))] for _ in range(3)]
    splits = {"forward": [(query, g) for g in trials], "reverse": [(g, query) for g in trials[:2]]}
    features = {s.path: v for s, v in zip(query + pool, rng.standard_normal((65, 8)))}
    for path, v in features.items():
        features[path] = v / np.linalg.norm(v)
    return FakeDataset(splits, metric_protocol), features


@pytest.mark.parametrize("metric_protocol", ["sysu", "regdb"])
def test_results_equal_per_trial_loop_and_their_means(metric_protocol):
    dataset, features = random_dataset(0, metric_protocol)
    calls = []

    def embed(samples):
        calls.append(list(samples))
        return torch.tensor(np.stack([features[s.path] for s in samples]), dtype=torch.float32)

    results = run_protocols(embed, dataset, trials=10, progress=False)
    assert len(calls) == 1
    used = {s.path for pairs in dataset.splits.values() for pair in pairs for lst in pair for s in lst}
    paths = [s.path for s in calls[0]]
    assert len(paths) == len(set(paths)) and set(paths) == used  # every distinct image once
    for name, pairs in dataset.splits.items():
        expected = []
        for query, gallery in pairs:
            expected.append(loop_metrics([features[s.path] for s in query], [features[s.path] for s in gallery],
                                         [s.pid for s in query], [s.pid for s in gallery],
                                         [s.camid for s in query], [s.camid for s in gallery], metric_protocol))
        assert len(results[name]["trials"]) == len(pairs)
        for got, want in zip(results[name]["trials"], expected):
            assert got == pytest.approx(want, abs=1e-6)
        for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
            assert results[name][key] == pytest.approx(np.mean([w[key] for w in expected]), abs=1e-6)


def test_trials_limits_the_number_of_gallery_draws():
    dataset, features = random_dataset(1, "regdb")
    embed = lambda samples: np.stack([features[s.path] for s in samples])  # noqa: E731 (numpy output)
    results = run_protocols(embed, dataset, trials=2, progress=False)
    assert [len(r["trials"]) for r in results.values()] == [2, 2]


def test_features_equal_to_identity_give_perfect_scores():
    query = [sample(i, pid, 3, INFRARED) for i, pid in enumerate([0, 1, 2, 2])]
    gallery = [sample(i, pid, 1, VISIBLE) for i, pid in enumerate([2, 1, 0, 1])]
    dataset = FakeDataset({"p": [(query, gallery)]}, "sysu")
    results = run_protocols(lambda s: torch.eye(3)[[x.pid for x in s]], dataset, progress=False)
    assert {k: v for k, v in results["p"].items() if k not in ("trials", "cmc")} == {
        "rank1": 1.0, "rank5": 1.0, "rank10": 1.0, "rank20": 1.0, "mAP": 1.0, "mINP": 1.0}
    assert results["p"]["cmc"] == [1.0] * 20


def test_embed_with_wrong_row_count_is_reported():
    query = [sample(i, i, 3, INFRARED) for i in range(4)]
    dataset = FakeDataset({"p": [(query, query[:2])]}, "regdb")
    with pytest.raises(ValueError, match=r"expected \(4, D\)"):
        run_protocols(lambda samples: np.zeros((3, 8)), dataset, progress=False)


def test_format_table_prints_percentages_per_protocol():
    table = format_table({
        "all-single": {"rank1": 0.61625, "rank5": 0.8, "rank10": 0.9, "rank20": 0.95, "mAP": 0.579,
                       "mINP": 0.4, "trials": [{}] * 10},
        "visible-to-thermal": {"rank1": 0.897, "mAP": 0.805},
    })
    lines = table.splitlines()
    assert lines[0].split() == ["Protocol", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP", "Trials"]
    assert lines[2].split() == ["all-single", "61.62", "80.00", "90.00", "95.00", "57.90", "40.00", "10"]
    assert lines[3].split() == ["visible-to-thermal", "89.70", "-", "-", "-", "80.50", "-", "-"]


def write_features(path, **overrides):
    arrays = {
        # query 0 (pid 1): gallery order 0 (pid 1), 2 (pid 2), 1 (pid 1) -> AP (1 + 2/3) / 2, INP 2/3
        # query 1 (pid 2): gallery order 2 (pid 2) first -> AP 1, INP 1
        "query_features": np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        "query_pids": np.array([1, 2]),
        "query_camids": np.array([3, 6]),
        "gallery_features": np.array([[2.0, 0.0], [-1.0, 0.1], [0.6, 0.8]], dtype=np.float32),
        "gallery_pids": np.array([1, 1, 2]),
        "gallery_camids": np.array([1, 4, 5]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_evaluate_feature_file_by_hand(tmp_path):
    result = evaluate_feature_file(write_features(tmp_path / "f.npz"), "regdb")
    assert result["rank1"] == 1.0
    assert result["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert result["mINP"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(result) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "cmc"}
    assert result["cmc"] == [1.0] * 20  # both queries match at rank 1


def test_feature_file_missing_array_is_named(tmp_path):
    path = write_features(tmp_path / "f.npz", gallery_camids=None)
    with pytest.raises(FeatureFileError, match="gallery_camids"):
        load_feature_file(path)


def test_feature_file_shape_mismatch_names_array_and_shapes(tmp_path):
    path = write_features(tmp_path / "f.npz", query_pids=np.array([1, 2, 3]))
    with pytest.raises(FeatureFileError, match=r"query_pids.*\(2,\).*\(3,\)"):
        load_feature_file(path)
    path = write_features(tmp_path / "g.npz", gallery_features=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(FeatureFileError, match="differ in feature size"):
        load_feature_file(path)


def test_feature_file_not_found_or_not_npz(tmp_path):
    with pytest.raises(FeatureFileError, match="no such feature file"):
        load_feature_file(tmp_path / "absent.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(FeatureFileError, match="not a readable"):
        load_feature_file(bad)


def test_feature_file_unknown_protocol(tmp_path):
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        evaluate_feature_file(write_features(tmp_path / "f.npz"), "market1501")


@pytest.mark.parametrize("side", ["query", "gallery"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])   # 1e300 overflows the float32 the metrics use
def test_feature_file_with_non_finite_features_names_the_file_array_and_row(tmp_path, side, bad):
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float64)[: 2 if side == "query" else 3]
    feats[1, 0] = bad
    path = write_features(tmp_path / "f.npz", **{f"{side}_features": feats})
    with pytest.raises(FeatureFileError) as err:
        evaluate_feature_file(path, "regdb")
    message = str(err.value)
    assert str(path) in message and f"{side}_features" in message and "1 of" in message and "row 1" in message


@pytest.mark.parametrize("side", ["query", "gallery"])
def test_feature_file_with_an_empty_side_names_the_file_and_array(tmp_path, side):
    path = write_features(tmp_path / "f.npz", **{f"{side}_features": np.zeros((0, 2), dtype=np.float32),
                                                 f"{side}_pids": np.zeros(0, dtype=np.int64),
                                                 f"{side}_camids": np.zeros(0, dtype=np.int64)})
    with pytest.raises(FeatureFileError, match=rf"{path}: {side}_features has no rows"):
        evaluate_feature_file(path, "regdb")


def test_feature_file_without_any_matching_query_names_the_file(tmp_path):
    path = write_features(tmp_path / "f.npz", query_pids=np.array([7, 8]))
    with pytest.raises(FeatureFileError, match=rf"{path}: none of the 2 queries has a gallery feature with its pid"):
        evaluate_feature_file(path, "regdb")


def test_feature_file_whose_only_matches_are_excluded_by_the_sysu_camera_rule(tmp_path):
    # both queries come from cam3 and each one's pid is only in the cam2 gallery, which cam3 ignores
    path = write_features(tmp_path / "f.npz", query_camids=np.array([3, 3]), gallery_camids=np.array([2, 2, 2]))
    with pytest.raises(FeatureFileError, match="cam3 queries do not count cam2"):
        evaluate_feature_file(path, "sysu")
    assert evaluate_feature_file(path, "regdb")["rank1"] == 1.0   # no camera rule: the same file is fine


def test_feature_file_with_one_matching_query_is_scored_on_it(tmp_path):
    # query 1's pid (9) is absent from the gallery: it is skipped, query 0 alone is scored
    path = write_features(tmp_path / "f.npz", query_pids=np.array([1, 9]))
    result = evaluate_feature_file(path, "regdb")
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("change", [dict(query_features=np.array([[np.nan, 0.0], [0.0, 1.0]])),
                                    dict(gallery_pids=np.array([5, 5, 6]))])
def test_evaluate_command_reports_a_bad_feature_file_in_one_line(tmp_path, capsys, change):
    from vireid.cli import main

    path = write_features(tmp_path / "f.npz", **change)
    assert main(["evaluate", "--features", str(path), "--protocol", "regdb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err
