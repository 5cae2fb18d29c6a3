"""Plain-text tables of evaluation results, in percentages as papers report them."""

from __future__ import annotations

COLUMNS = (("Rank-1", "rank1"), ("Rank-5", "rank5"), ("Rank-10", "rank10"), ("Rank-20", "rank20"),
           ("mAP", "mAP"), ("mINP", "mINP"))


def format_table(results: dict[str, dict]) -> str:
    """One row per protocol: Rank-1/5/10/20, mAP and mINP in percent (two decimals), and the
    number of trials averaged when the results carry them; a missing metric shows as "-".

    `results` maps protocol name to a dict with fractions (the output of `run_protocols` or
    `evaluate_feature_file`).
    """
    name_width = max([len("Protocol")] + [len(str(name)) for name in results])
    with_trials = any("trials" in r for r in results.values())
    header = [f"{'Protocol':<{name_width}}"] + [f"{title:>8}" for title, _ in COLUMNS]
    if with_trials:
        header.append(f"{'Trials':>7}")
    lines = ["  ".join(header)]
    lines.append("-" * len(lines[0]))
    for name, metrics in results.items():
        cells = [f"{name:<{name_width}}"]
        for _, key in COLUMNS:
            value = metrics.get(key)
            cells.append(f"{100.0 * value:>8.2f}" if value is not None else f"{'-':>8}")
        if with_trials:
            cells.append(f"{len(metrics['trials']) if 'trials' in metrics else '-':>7}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
