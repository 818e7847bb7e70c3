"""Rule trust_summary: one row per experiment and fold with every reason to doubt its score.

The table opens the HTML report, so a reviewer sees leakage, uncertainty, how much
the model beats trivial baselines, its external score and whether the border-only
control flags a shortcut before looking at any single metric (cxrflow.audit.trust_table).
"""

from typing import Any

from cxrflow.audit import trust_table
from cxrflow.data import open_log


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        table = trust_table(sm.params.rows, list(sm.input.metrics), list(sm.input.baselines), sm.input.data_audit,
                            sm.params.positive, list(sm.params.split_audits), list(sm.params.external),
                            list(sm.input.get("shortcut", [])) or None,
                            list(sm.params.shortcut_experiment) or None,
                            list(sm.params.shortcut_external) or None)  # fmt: skip
        table.to_csv(sm.output[0], index=False, float_format="%.4f")
        log.info("trust summary of %d model(s) written to %s", len(table), sm.output[0])
    except Exception:
        log.exception("trust summary failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
