"""Snakemake `script:` rule shortcut_summary: one shortcut verdict per experiment, over all its folds.

Pools the folds' test predictions of the model and of its border-only control
(cxrflow.shortcut.experiment_audit) and writes the experiment's shortcut_audit.json
and .txt beside its metrics.json.
"""

import json
from pathlib import Path
from typing import Any

from cxrflow.metrics import json_safe
from cxrflow.data import open_log
from cxrflow.metrics import read_predictions
from cxrflow.shortcut import experiment_audit, experiment_audit_text


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        fold_audits = [json.loads(Path(p).read_text()) for p in sm.input.audits]
        result = experiment_audit([read_predictions(p) for p in sm.input.full],
                                  [read_predictions(p) for p in sm.input.border_only],
                                  fold_audits, sm.params.classes, sm.params.settings, sm.params.bootstrap)  # fmt: skip
        result = {"experiment": sm.wildcards.experiment, **result}
        Path(sm.output.json).write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
        Path(sm.output.text).write_text(experiment_audit_text(result))
        log.info("%s (%d of %d folds flagged)", result["sentence"], result["flagged_folds"], result["folds"])
    except Exception:
        log.exception("experiment shortcut audit failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
