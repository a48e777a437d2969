"""Stage prepare: load one dataset, store it as uint8 arrays with train/val/test/reference splits."""

import _common  # noqa: F401
import argparse

from saln.config import load_params, source_config, split_config
from saln.data import prepare
from saln.errors import one_line_errors


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key of data.sources")
    args = parser.parse_args()
    params = load_params()
    source, splits = source_config(params, args.dataset), split_config(params)
    meta = prepare(source, splits, f"data/prepared/{args.dataset}")
    print(f"{args.dataset}: {meta['num_classes']} classes, splits {meta['sizes']}")


if __name__ == "__main__":
    main()
