"""Snakemake `script:` rules shortcut_audit (internal test) and shortcut_audit_external (the held-out
sources): does the border-only control come close to the full model?

Writes shortcut_audit.json (both models' F1 with bootstrap CIs, chance, verdict, flag)
and shortcut_audit.txt (the verdict in words, for the report): cxrflow.shortcut.
"""

from cxrflow.rule_log import run_rule
from cxrflow.shortcut import shortcut_audit_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], shortcut_audit_main, dict(sm.input.items()), dict(sm.output.items()),
         list(sm.params.classes), sm.params.settings, sm.params.bootstrap, dict(sm.wildcards.items()),
         sm.params.get("test", "internal"))  # fmt: skip
