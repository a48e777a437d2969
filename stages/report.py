"""Stage report: tables of every (dataset, method) over seeds, written under reports/."""

import _common  # noqa: F401
from pathlib import Path

from saln.config import dataset_names, load_params, method_names, seeds
from saln.errors import one_line_errors
from saln.report.runs import collect_runs
from saln.report.summary import metrics_markdown


@one_line_errors
def main() -> None:
    params = load_params()
    datasets, methods = dataset_names(params), method_names(params)
    runs = collect_runs(datasets, methods, seeds(params))
    Path("reports").mkdir(exist_ok=True)
    Path("reports/metrics.md").write_text(metrics_markdown(runs, datasets, methods))
    print(f"reports/metrics.md: {len(runs)} runs")


if __name__ == "__main__":
    main()
