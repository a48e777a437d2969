"""Stage augment: write the augmentation config that training and feature extraction read."""

import _common  # noqa: F401

from saln.augment import augment_spec, save_spec
from saln.config import load_params
from saln.errors import one_line_errors


@one_line_errors
def main() -> None:
    save_spec(augment_spec(load_params()["augment"]), "results/augment/config.json")


if __name__ == "__main__":
    main()
