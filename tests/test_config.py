"""Which settings a run uses: the user's alone when they name sources, else the demo's beneath."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cxrflow.config import (
    ConfigError,
    apply_demo,
    check_source_mix,
    schema_defaults,
    synthetic_sources,
    with_defaults,
)
from workflow_helpers import shipped_demo

REPO = Path(__file__).resolve().parents[1]
DEMO = shipped_demo()


def test_shipped_config_names_no_sources_so_the_demo_runs() -> None:
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    assert shipped == {"sources": {}}  # only what a user changes; every default is the schema's
    config = dict(shipped)
    assert apply_demo(config, DEMO)
    assert set(config["sources"]) == {"demo_covid", "demo_normal"} and set(config["experiments"]) == {"demo_vgg19"}
    full = with_defaults(config)
    assert full["preprocess"]["batch_size"] == schema_defaults()["preprocess"]["batch_size"]


def test_user_sources_leave_no_demo_setting_behind() -> None:
    """Snakemake merged my.yaml into config.yaml: what the workflow then sees."""
    config = {**yaml.safe_load((REPO / "config.yaml").read_text()),
              "sources": {"mine": {"format": "folders", "path": "/data/mine"}},
              "experiments": {"r50": {"arch": "resnet50"}}}  # fmt: skip
    assert not apply_demo(config, DEMO)
    full = with_defaults(config)
    assert list(full["sources"]) == ["mine"] and list(full["experiments"]) == ["r50"]
    assert full["audit"]["gradcam"]["layer"] is None  # not the demo's block4_conv4
    assert full["experiments"]["r50"]["learning_rate"] == 0.001 and full["experiments"]["r50"]["image_size"] == 224
    assert synthetic_sources(full) == []


def test_user_overrides_win_and_experiments_replace_whole() -> None:
    config = {"demo": {"covid": {"images": 5}}, "experiments": {}, "preprocess": {"size": 32}}
    apply_demo(config, DEMO)
    assert config["demo"]["covid"]["images"] == 5 and config["demo"]["covid"]["patients"] == 70
    assert config["experiments"] == {} and config["preprocess"] == {"size": 32}


def test_demo_beside_real_sources_needs_the_switch() -> None:
    config = with_defaults({"sources": {**DEMO["sources"], "mine": {"format": "folders", "path": "data"}}})
    assert synthetic_sources(config) == ["demo_covid", "demo_normal"]
    with pytest.raises(ConfigError, match="mix synthetic images into a real experiment") as err:
        check_source_mix(config)
    assert "mix_with_real: true" in str(err.value)
    config["demo"]["mix_with_real"] = True
    check_source_mix(config)
    # a path that only starts like the demo folder is not in it
    check_source_mix(with_defaults({"sources": {"a": {"format": "folders", "path": "results/demo2"},
                                                "b": {"format": "folders", "path": "data"}}}))  # fmt: skip


def test_configuration_docs_are_generated_from_the_schema() -> None:
    """docs/configuration.md is the schema's own table: CI fails when it is stale."""
    from cxrflow.config import config_markdown

    doc = REPO / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == config_markdown(), "run: python scripts/config_docs.py"
    assert "| `preprocess.min_side` | integer | `32` |" in doc.read_text()


def test_check_experiments_refuses_unknown_or_all_test_sources() -> None:
    from cxrflow.config import check_experiments

    config = {"sources": {"a": {}, "b": {}}, "experiments": {"e": {"test_sources": ["b"]}}}
    check_experiments(config)
    with pytest.raises(ConfigError, match=r"test_sources \['c'\] are not sources"):
        check_experiments({**config, "experiments": {"e": {"test_sources": ["c"]}}})
    with pytest.raises(ConfigError, match="hold out every source"):
        check_experiments({**config, "experiments": {"e": {"test_sources": ["a", "b"]}}})
