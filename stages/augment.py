"""Stage augment: write the augmentation config that training and feature extraction read."""

import _common

from saln.augment import augment_spec, save_spec
from saln.config import load_params
from saln.errors import one_line_errors


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "out", dataset=False)
    save_spec(augment_spec(load_params(args.params)["augment"]), args.out)


if __name__ == "__main__":
    main()
