"""Stage report: <out>/report.md (paper vs ours: Tables 1-16, verdicts on completed runs at equal images,
epochs and seconds, time to target, all-in cost, best learning rates, figures; beyond the paper: prune, active),
<out>/metrics.md, <out>/tables/*.csv and <out>/figures/*.png. dvc.yaml passes every root."""

import _common  # noqa: F401
import argparse
from pathlib import Path

from saln.config import load_params
from saln.errors import one_line_errors
from saln.report.build import Roots, build_report
from saln.report.regime import regime_from_params

ROOT_ARGS = ("train", "models", "lr", "diagnostics", "features", "reference", "prune", "active", "prepared")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (report.out)")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    for name in ROOT_ARGS:
        parser.add_argument(f"--{name}", required=True, type=Path)
    return parser.parse_args(argv)


@one_line_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    regime = regime_from_params(load_params(args.params))
    out = Path(args.out)
    roots = Roots(out=out, **{name: getattr(args, name) for name in ROOT_ARGS})
    runs = build_report(regime, roots, command="dvc repro report")
    print(f"{out.as_posix()}/report.md, {out.as_posix()}/metrics.md: {len(runs)} runs")


if __name__ == "__main__":
    main()
