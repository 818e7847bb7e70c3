"""Which settings a run uses: the user's configuration, or the embedded demo's.

Snakemake merges every ``--configfile`` into the ``configfile:`` directive's file
key by key, so a demo written into the shipped ``config.yaml`` would leak its
sources, experiments and demo-tuned settings into a user's run. The demo therefore
lives in a file of its own (``workflow/demo.yaml``) and is laid under the user's
settings only when the user names no sources. Synthetic and real sources never
meet by accident: ``check_source_mix`` stops such a run before any work.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Keys the user's configuration replaces whole instead of merging into the demo's:
# `experiments: {}` means "no experiments", not "the demo's experiments".
REPLACED_KEYS = ("sources", "experiments")


class ConfigError(ValueError):
    """The configuration cannot run as written; the message says what to change."""


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key (as Snakemake merges config files)."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def uses_demo(config: Mapping[str, Any]) -> bool:
    """The demo runs exactly when the user names no sources of their own."""
    return not config.get("sources")


def apply_demo(config: MutableMapping[str, Any], demo: Mapping[str, Any]) -> bool:
    """Lay the demo configuration under ``config`` in place when it names no sources.

    Returns whether the demo was applied. The user's keys win; ``sources`` and
    ``experiments`` given by the user replace the demo's whole.
    """
    if not uses_demo(config):
        return False
    user = {k: v for k, v in config.items() if k != "sources"}
    merged = deep_merge(demo, user)
    for key in REPLACED_KEYS:
        if key in user:
            merged[key] = copy.deepcopy(user[key])
    config.clear()
    config.update(merged)
    return True


def _inside(path: str, folder: str) -> bool:
    """Lexical: is ``path`` the folder or below it (both relative to the working directory)?"""
    p, f = posixpath.normpath(str(path)), posixpath.normpath(str(folder))
    return p == f or p.startswith(f.rstrip("/") + "/")


def synthetic_sources(config: Mapping[str, Any]) -> list[str]:
    """Sources whose dataset folder lies in the demo's folder (written by the demo rule)."""
    demo_path = config["demo"]["path"]
    return [name for name, spec in config["sources"].items() if _inside(spec["path"], demo_path)]


def check_source_mix(config: Mapping[str, Any]) -> None:
    """Refuse synthetic demo sources beside real ones unless ``demo.mix_with_real`` says so."""
    synthetic = synthetic_sources(config)
    real = [name for name in config["sources"] if name not in synthetic]
    if synthetic and real and not config["demo"]["mix_with_real"]:
        raise ConfigError(
            f"sources {synthetic} are the synthetic demo (their path lies in demo.path "
            f"{config['demo']['path']!r}) and {real} are real data: this run would mix "
            "synthetic images into a real experiment. To run only your data, list only your "
            "sources under `sources:` in your --configfile (the demo is then off). To mix "
            "them on purpose, set `demo: {mix_with_real: true}`."
        )


def check_experiments(config: Mapping[str, Any]) -> None:
    """Refuse what the schema cannot check: an experiment's test_sources must name configured sources,
    and leave at least one source to train on. (Grid keys are checked by the schema.)"""
    sources = set(config["sources"])
    for name, spec in config["experiments"].items():
        held_out = set(spec.get("test_sources") or [])
        unknown = sorted(held_out - sources)
        if unknown:
            raise ConfigError(f"experiment {name}: test_sources {unknown} are not sources")
        if held_out and held_out == sources:
            raise ConfigError(f"experiment {name}: test_sources hold out every source")


def seed_run(parent: str, seed: int) -> str:
    """The name of one seed's run of an experiment with `seeds`."""
    return f"{parent}_seed{seed}"


def expand_seeds(config: MutableMapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """Replace, in place, every experiment with `seeds: [..]` by one experiment per seed; return
    {parent: [(run, seed), ...]}.

    Each run is the parent's settings with its own `seed` (training's existing seed key), so
    every other rule (split, train, evaluate, audits) treats it as an ordinary experiment with
    no extra wildcard; runs keep the parent's `test_sources` and `folds`, and the split depends
    on neither the name nor the training seed, so all runs are trained and tested on the same
    split. The parent's seed summary gathers them (results/experiments/<parent>/seeds.json).
    """
    groups: dict[str, list[tuple[str, int]]] = {}
    expanded: dict[str, Any] = {}
    for name, spec in config["experiments"].items():
        seeds = list((spec or {}).get("seeds") or [])
        if not seeds:
            expanded[name] = spec
            continue
        groups[name] = [(seed_run(name, s), int(s)) for s in seeds]
        for run, seed in groups[name]:
            if run in config["experiments"]:
                raise ConfigError(f"experiment {name}: seed run {run} clashes with an experiment of that name")
            expanded[run] = {**copy.deepcopy(spec), "seed": seed, "seeds": []}
    config["experiments"] = expanded
    return groups


# Package data: a non-editable install carries it (pyproject.toml, package-data).
SCHEMA = Path(__file__).resolve().with_name("config.schema.yaml")
# The least configuration the schema accepts: one source, one experiment of all defaults.
_MINIMAL = {"sources": {"x": {"format": "folders", "path": "."}}, "experiments": {"default": {}}}


def load_schema(path: Path = SCHEMA) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def with_defaults(config: Mapping[str, Any], path: Path = SCHEMA) -> dict[str, Any]:
    """``config`` validated against the schema with every default filled in.

    What the workflow does with snakemake.utils.validate, for code outside a workflow
    (tests, benchmarks, the docs generator), so that none of them repeats a default.
    """
    schema = load_schema(path)
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema_):  # jsonschema's documented recipe
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    filling = jsonschema.validators.extend(base, {"properties": set_defaults})
    out = copy.deepcopy(dict(config))
    filling(schema).validate(out)
    return out


def schema_defaults() -> dict[str, Any]:
    """Every setting at the schema's default, with one placeholder source and one experiment
    (``experiments["default"]``): the values code outside a workflow reads instead of retyping."""
    return with_defaults(_MINIMAL)


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (#/definitions/...), keeping the referring node's own keys on top."""
    if "$ref" not in node:
        return node
    target: Any = schema
    for part in str(node["$ref"]).lstrip("#/").split("/"):
        target = target[part]
    return {**_resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def _default_text(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (dict, list)) and not value:
        return "`{}`" if isinstance(value, dict) else "`[]`"
    return f"`{json_compact(value)}`"


def json_compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value


def config_rows(schema: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) of every documented key, depth first, in schema order.

    Free-form mappings (sources, experiments, labels) appear once with `<name>` in the path.
    """
    rows: list[tuple[str, str, str, str]] = []

    def walk(node: Mapping[str, Any], path: str) -> None:
        node = _resolve(node, schema)
        kind = node.get("type", "")
        kind_text = "/".join(kind) if isinstance(kind, list) else str(kind)
        if "enum" in node:
            kind_text = " \\| ".join(f"`{v}`" for v in node["enum"])
        if path:
            default = _default_text(node["default"]) if "default" in node else "–"
            description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
            rows.append((f"`{path}`", kind_text, default, description))
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}" if path else name)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and (_resolve(extra, schema).get("properties")):
            walk(extra, f"{path}.<name>")

    walk(schema, "")
    return rows


def config_markdown(path: Path = SCHEMA) -> str:
    """docs/configuration.md's key table, generated from the schema (its one source)."""
    schema = load_schema(path)
    lines = [
        "# Configuration, key by key",
        "",
        "<!-- Generated from scripts/cxrflow/config.schema.yaml by `python scripts/config_docs.py`;",
        "     tests/test_config.py fails when this file is stale. Edit the schema, not this file. -->",
        "",
        " ".join(str(schema.get("description", "")).split()),
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {t} | {d} | {m} |" for k, t, d, m in config_rows(schema)]
    return "\n".join(lines) + "\n"
