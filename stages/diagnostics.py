"""Stage diagnostics: why each selector keeps what it keeps, measured on the saved first-epoch selections
of every run at its method's best learning rate -> <out> (diagnostics.json).

    python stages/diagnostics.py --dataset digits --prepared data/prepared/digits ...  (see dvc.yaml)
"""

import _common
import json
from pathlib import Path

import numpy as np

from saln.config import load_params, seeds
from saln.diagnostics import NOT_RUN, Data, diagnose, load_selections, spectral_methods
from saln.files import write_json
from saln.errors import SalnError, one_line_errors
from saln.selection.all import method_names


def load_data(labels: Path, features: Path, losses: Path) -> Data:
    for path in (features, labels):
        if not path.is_file():
            raise SalnError(f"{path} not found: run the stage that writes it first (dvc repro)")
    return Data(np.load(features), np.load(labels),
                np.load(losses).astype(np.float64) if losses.is_file() else None)


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__.splitlines()[0], "labels", "features", "losses", "models", "best_lr",
                              "out")
    params = load_params(args.params)
    methods = method_names(params)
    spectral = spectral_methods(params, methods)  # validates the saln block when a spectral method runs
    best = json.loads(Path(args.best_lr).read_text())["methods"]
    rates = {m: best.get(m, {}).get("best_lr") for m in methods}
    selections = load_selections(args.models, args.dataset, rates, seeds(params))
    data = load_data(Path(args.labels), Path(args.features), Path(args.losses))
    result = diagnose(args.dataset, methods, selections, data, spectral)
    path = write_json(Path(args.out), result)
    ran = [m for m, e in result["methods"].items() if e["kind"] != NOT_RUN]
    print(f"{path.as_posix()}: {len(ran)} of {len(methods)} methods, "
          f"{sum(e.get('batches', 0) for e in result['methods'].values())} saved batches")
    for note in result["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
