"""Stage validate: reject bad params with one line before any other stage runs."""

import _common
from pathlib import Path

from saln.config import load_params
from saln.validate import validate_all
from saln.errors import one_line_errors


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "out", dataset=False)
    validate_all(load_params(args.params))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("params.yaml is valid\n")


if __name__ == "__main__":
    main()
