"""Rule audit_data: leakage between splits and whether the source gives the label away.

Two things that make a test score meaningless without any bug in the model:
the same patient or radiograph on both sides of a split, and collections that
coincide with labels while being recognisable from the pixels (the model then
learns the collection). Both are measured by cxrflow.data_audit.data_audit.
"""

from cxrflow.data_audit import data_audit_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], data_audit_main, sm.input.manifest, sm.input.assignments, sm.input.duplicates, sm.output[0],
         sm.params.thumbnail_size, sm.params.source, sm.output.shared, sm.params.cache)  # fmt: skip
