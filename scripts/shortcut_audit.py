"""Snakemake `script:` rules shortcut_audit (internal test) and shortcut_audit_external (the held-out
sources): does the border-only control come close to the full model?

Writes shortcut_audit.json (both models' F1 with bootstrap CIs, chance, verdict, flag)
and shortcut_audit.txt (the verdict in words, for the report): cxrflow.shortcut.
"""

import json
from pathlib import Path
from typing import Any

from cxrflow.metrics import json_safe
from cxrflow.data import open_log
from cxrflow.metrics import read_predictions
from cxrflow.shortcut import audit_text, shortcut_audit


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        result = shortcut_audit(read_predictions(sm.input.full), read_predictions(sm.input.border_only),
                                sm.params.classes, sm.params.settings, sm.params.bootstrap)  # fmt: skip
        wildcards = dict(sm.wildcards.items())
        result = {"experiment": wildcards.get("experiment", ""), "fold": wildcards.get("fold", ""),
                  "test": sm.params.get("test", "internal"), **result}  # fmt: skip
        Path(sm.output.json).write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
        Path(sm.output.text).write_text(audit_text(result))
        log.info("%s", result["sentence"])
    except Exception:
        log.exception("shortcut audit failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
