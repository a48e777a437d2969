"""Stage report: reports/report.md (paper vs ours: tables, figures, claims; beyond the paper: results/prune,
results/active) and reports/metrics.md."""

import _common  # noqa: F401
from pathlib import Path

from saln.config import dataset_names, load_params, method_names, seeds, train_config
from saln.errors import one_line_errors
from saln.report.build import build_report
from saln.report.runs import collect_runs
from saln.report.summary import metrics_markdown

OUT_DIR = Path("reports")


@one_line_errors
def main() -> None:
    params = load_params()
    datasets, methods, seed_list = dataset_names(params), method_names(params), seeds(params)
    cfg = train_config(params)
    OUT_DIR.mkdir(exist_ok=True)
    runs = collect_runs(datasets, methods, seed_list)
    (OUT_DIR / "metrics.md").write_text(metrics_markdown(runs, datasets, methods))
    keep_fraction = (params.get("prune") or {}).get("keep_fraction")  # where the prune_* runs are marked
    build_report(datasets, methods, seed_list, cfg.filter_ratio, list(cfg.log_batches), out_dir=OUT_DIR,
                 keep_fraction=keep_fraction)
    print(f"reports/report.md, reports/metrics.md: {len(runs)} runs")


if __name__ == "__main__":
    main()
