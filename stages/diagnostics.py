"""Stage diagnostics: why each selector keeps what it keeps, measured on the saved first-epoch selections
of every run of the train matrix -> results/diagnostics/<dataset>/diagnostics.json.

    python stages/diagnostics.py --dataset digits
"""

import _common
from pathlib import Path

import numpy as np

from saln.config import load_params, seeds
from saln.diagnostics import (DIAGNOSTICS_ROOT, NOT_RUN, TRAIN_ROOT, Data, diagnose, load_selections, spectral_methods,
                              write_json)
from saln.errors import SalnError, one_line_errors
from saln.selection.all import method_names


def load_data(dataset: str) -> Data:
    features = Path(f"data/features/{dataset}/features.npy")
    labels = Path(f"data/prepared/{dataset}/labels.npy")
    for path, stage in ((features, "features"), (labels, "prepare")):
        if not path.is_file():
            raise SalnError(f"{path} not found: run stage {stage} for {dataset} first")
    losses = Path(f"data/reference/{dataset}/losses.npy")
    return Data(np.load(features), np.load(labels),
                np.load(losses).astype(np.float64) if losses.is_file() else None)


@one_line_errors
def main() -> None:
    args = _common.dataset_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    methods = method_names(params)
    spectral = spectral_methods(params, methods)  # validates the saln block when a spectral method runs
    selections = load_selections(TRAIN_ROOT, args.dataset, methods, seeds(params))
    result = diagnose(args.dataset, methods, selections, load_data(args.dataset), spectral)
    path = write_json(DIAGNOSTICS_ROOT / args.dataset / "diagnostics.json", result)
    ran = [m for m, e in result["methods"].items() if e["kind"] != NOT_RUN]
    print(f"{path.as_posix()}: {len(ran)} of {len(methods)} methods, "
          f"{sum(e.get('batches', 0) for e in result['methods'].values())} saved batches")
    for note in result["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
