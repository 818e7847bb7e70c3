"""Rule make_splits: near-duplicate search, then patient-grouped, stratified, stable splits.

Near-duplicates are found here, not in a rule of their own, because they decide
the split (cxrflow.split.make_splits_main).
"""

from cxrflow.crop_jobs import pool_workers
from cxrflow.rule_log import run_rule
from cxrflow.split import make_splits_main

# guarded: the copy search's worker processes are spawned and import this file as __mp_main__
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run_rule(sm.log[0], make_splits_main, sm.input.manifest, dict(sm.output.items()), sm.params.out_dir,
             sm.params.split, list(sm.params.classes), sm.params.duplicates, pool_workers(sm.threads), sm.params.cache)  # fmt: skip
