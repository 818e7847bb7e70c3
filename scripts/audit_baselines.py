"""Rule baselines: logistic regressions on thumbnails and on the border ring alone, beside the model.

The margin model - baseline says how much the deep model adds over what a linear
model reads off a 28x28 picture (or off the border alone): cxrflow.baselines.run_baselines.
"""

import json
from pathlib import Path
from typing import Any

from cxrflow.baselines import run_baselines
from cxrflow.data import open_log


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        metrics = json.loads(Path(sm.input.metrics).read_text())["metrics"]
        result = run_baselines(sm.input.train, sm.input.test, metrics, sm.params.classes, sm.params.settings)
        Path(sm.output[0]).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        log.info("baselines: thumbnail F1 %s, border ring F1 %s, model F1 %s", result["thumbnail"]["f1"],
                 result["border_ring"]["f1"], result["model"]["f1"])
    except Exception:
        log.exception("baselines failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
