"""Stage report: <out>/report.md (paper vs ours: Tables 1-16, claims at equal epochs / images / seconds,
best learning rates, figures; beyond the paper: results/prune, results/active), <out>/metrics.md,
<out>/tables/*.csv and <out>/figures/*.png.

    python stages/report.py                        # writes reports/
    python stages/report.py --out reports/cifar10_subset
"""

import _common  # noqa: F401
import argparse
from pathlib import Path

from saln.config import load_params
from saln.errors import one_line_errors
from saln.report.build import Roots, build_report
from saln.report.regime import regime_from_params


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports", help="output folder (default reports)")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    return parser.parse_args(argv)


@one_line_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    regime = regime_from_params(load_params(args.params))
    out = Path(args.out)
    runs = build_report(regime, Roots(out=out), command=f"python stages/report.py --out {out.as_posix()}")
    print(f"{out.as_posix()}/report.md, {out.as_posix()}/metrics.md: {len(runs)} runs")


if __name__ == "__main__":
    main()
