"""Rule inner_split: one inner fold of an outer training split, grouped by patient (thin wrapper)."""

from cxrflow.data import open_log
from cxrflow.nested import write_inner_split

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
n_train, n_val = write_inner_split(sm.input.train, sm.input.assignments, sm.params.inner_folds,
                                   int(sm.wildcards.inner), sm.params.seed, sm.output.train, sm.output.val)
log.info("outer fold %s, inner fold %s of %d: %d train, %d validation images", sm.wildcards.fold,
         sm.wildcards.inner, sm.params.inner_folds, n_train, n_val)
