"""Each method at its own best learning rate, from the lr sweep's results/lr/<dataset>/best.json.

best.json (written by the sweep stage when ``sweep.lrs`` is set)::

    {"dataset": ..., "common_lr": 0.01, "lrs": [...],
     "methods": {"<method>": {"best_lr": 0.03, "val_acc": {"0.003": 0.61, "0.03": null},
                              "diverged": ["0.03"], "runs": {"<lr>": ["<run dir>", ...]}}}}

Each run dir holds metrics.json (finished) or diverged.json.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from saln.report.beyond import load_result
from saln.report.claims import claim_rows, claims_markdown, data_notes, group_runs
from saln.report.markdown import markdown_table
from saln.report.runs import Stat, load_run, stat

LR_ROOT = Path("results/lr")
TITLE = "Each method at its own best learning rate"


def sweep_off(lr: float) -> str:
    return (f"The learning-rate sweep is off (no `results/lr/<dataset>/best.json`): every method trains at "
            f"train.lr = {lr:g}. To turn it on, set `sweep.lrs` in params.yaml, e.g. "
            "`dvc exp run -S 'sweep.lrs=[0.003,0.03]'`.")


@dataclass(frozen=True)
class LrRow:
    method: str
    best_lr: float | None
    at_best: Stat          # test accuracy (fraction) of the finished runs at the best lr
    at_common: Stat        # ... at the common lr (train.lr)
    diverged: list[str]    # lrs at which the method diverged
    runs: list[dict] = field(default_factory=list)   # the finished runs at the best lr


def _runs_at(entry: dict, lr, dataset: str, method: str, base: Path) -> list[dict]:
    """Finished runs of ``entry`` at ``lr`` (the runs' keys are lrs as text; compared as numbers)."""
    if lr is None:
        return []
    dirs = next((ds for key, ds in (entry.get("runs") or {}).items() if float(key) == float(lr)), [])
    found = (load_run(base / d, dataset, method) for d in dirs)
    return [r for r in found if r is not None]


def _acc(runs: list[dict]) -> Stat:
    return stat([r["test_acc"] for r in runs if isinstance(r.get("test_acc"), (int, float))])


def lr_rows(best: dict, dataset: str, base: Path = Path(".")) -> list[LrRow]:
    """One row per method of best.json, in its order."""
    rows = []
    for method, entry in best["methods"].items():
        at_best = _runs_at(entry, entry.get("best_lr"), dataset, method, base)
        at_common = _runs_at(entry, best.get("common_lr"), dataset, method, base)
        rows.append(LrRow(method, entry.get("best_lr"), _acc(at_best), _acc(at_common),
                          [str(v) for v in entry.get("diverged") or []], at_best))
    return rows


def _pct(s: Stat) -> str:
    return "no finished run" if s.n == 0 else s.format(2, 100.0)


def lr_markdown(rows: list[LrRow], common_lr) -> str:
    header = ["method", "best lr", "test acc (%) at the best lr: mean ± std (n)",
              f"test acc (%) at the common lr {common_lr:g}: mean ± std (n)", "diverged at lr"]
    return markdown_table(header, [[r.method, "—" if r.best_lr is None else f"{r.best_lr:g}", _pct(r.at_best),
                                     _pct(r.at_common), ", ".join(r.diverged) or "—"] for r in rows])


def write_lr_csv(dataset: str, rows: list[LrRow], path: str | Path) -> None:
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "method", "best_lr", "test_acc_best_mean", "test_acc_best_std", "n_best",
                         "test_acc_common_mean", "test_acc_common_std", "n_common", "diverged"])
        for r in rows:
            writer.writerow([dataset, r.method, "" if r.best_lr is None else r.best_lr,
                             *(["", "", 0] if r.at_best.n == 0 else [r.at_best.mean, r.at_best.std, r.at_best.n]),
                             *(["", "", 0] if r.at_common.n == 0 else
                               [r.at_common.mean, r.at_common.std, r.at_common.n]),
                             " ".join(r.diverged)])


def _dataset_lines(dataset: str, best: dict, base: Path) -> tuple[list[str], list[LrRow]]:
    rows = lr_rows(best, dataset, base)
    lrs = ", ".join(f"{v:g}" for v in best.get("lrs") or [])
    lines = [f"### `{dataset}`", "",
             f"Learning rates swept: {lrs or 'not listed'}; common lr (train.lr) {best['common_lr']:g}. A method's "
             f"best lr: {best.get('rule') or 'the highest mean final validation accuracy over seeds'}; the test "
             "accuracy below is of the runs at that lr.", "", lr_markdown(rows, best["common_lr"]), ""]
    groups = group_runs([r for row in rows for r in row.runs])
    lines += ["Claims with every method at its own best lr (same rule as the claims above):", "",
              claims_markdown(claim_rows(groups)), ""]
    for note in data_notes(groups):
        lines += [f"*{note}*", ""]
    return lines, rows


def lr_section(datasets: list[str], common_lr: float, table_dir: Path, lr_root: Path = LR_ROOT,
               base: Path = Path(".")) -> tuple[list[str], list[str]]:
    """(Markdown lines, CSV file names written under ``table_dir``); one line when the sweep is off."""
    lines, csv_files, missing = [f"## {TITLE}", ""], [], []
    for dataset in datasets:
        best, why = load_result(Path(lr_root) / dataset / "best.json", "lr sweep")
        if best is None:
            if "is missing" in why:
                missing.append(dataset)
            else:
                lines += [f"*`{dataset}`: {why}.*", ""]
            continue
        try:
            more, rows = _dataset_lines(dataset, best, Path(base))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            lines += [f"*`{dataset}`: `best.json` is malformed: {err!r}.*", ""]
            continue
        lines += more
        csv_files.append(f"{dataset}_best_lr.csv")
        write_lr_csv(dataset, rows, table_dir / csv_files[-1])
    if len(missing) == len(datasets):
        lines += [sweep_off(common_lr), ""]
    elif missing:
        lines += [f"*No sweep results for {', '.join(missing)} (no `best.json`).*", ""]
    return lines, csv_files
