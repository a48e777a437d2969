"""Stage prepare: load one dataset, store it as uint8 arrays with train/val/test/reference splits."""

import _common

from saln.config import load_params
from saln.data import prepare, source_config, split_config
from saln.errors import one_line_errors


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "out")
    params = load_params(args.params)
    source, splits = source_config(params, args.dataset), split_config(params)
    meta = prepare(source, splits, args.out)
    print(f"{args.dataset}: {meta['num_classes']} classes, splits {meta['sizes']}")


if __name__ == "__main__":
    main()
