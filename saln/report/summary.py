"""reports/metrics.md: one row per dataset x method, mean +- std over seeds."""

from __future__ import annotations

from saln.report.markdown import markdown_table
from saln.report.runs import aggregate

COLUMNS = [  # (metric key, header, digits, scale)
    ("test_acc", "test acc (%)", 2, 100.0),
    ("val_acc", "val acc (%)", 2, 100.0),
    ("train_acc", "train acc (%)", 2, 100.0),
    ("train_seconds", "train s", 1, 1.0),
    ("selection_seconds", "selection s", 2, 1.0),
    ("images_backprop", "images back-propagated", 0, 1.0),
    ("images_scored", "images scored", 0, 1.0),
]


def metrics_markdown(runs: list[dict], datasets, methods) -> str:
    stats = {key: aggregate(runs, key) for key, *_ in COLUMNS}
    lines = ["# Metrics", "", "Mean ± sample std over seeds; n = number of seeds that finished.", ""]
    header = ["method"] + [h for _, h, _, _ in COLUMNS]
    for dataset in datasets:
        body = [[method] + [s.format(digits, scale) if (s := stats[key].get((dataset, method))) else "not run"
                            for key, _, digits, scale in COLUMNS] for method in methods]
        lines += [f"## {dataset}", "", markdown_table(header, body), ""]
    return "\n".join(lines)
