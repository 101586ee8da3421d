"""Options declared once (anas.options): values checked wherever they come from, plug-ins'
options resolved by one rule, resume rules, and the YAML form of a run's options."""

from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from anas.errors import AnasError
from anas.options import (
    HostsPlugins,
    build,
    check_unchanged,
    declared,
    option,
    option_names,
    plugin_options,
    to_yaml,
    updated,
    values_from_mapping,
)
from anas.registry import Registry

KINDS = Registry("widget")


@dataclass(frozen=True, kw_only=True)
class RoundOptions:
    radius: float = option(1.0, "Radius.", above=0, finite=True)


@dataclass(frozen=True, kw_only=True)
class BoxOptions:
    side: int = option(2, "Side.", min=1, max=10)
    corners: str = option("sharp", "Corners.", choices=("sharp", "Round"))


KINDS.register("round", options=RoundOptions)(object)
KINDS.register("box", options=BoxOptions)(int)


@dataclass(frozen=True, kw_only=True)
class Owner(HostsPlugins):
    name: str = option(help="Required.")
    widget: str = option("round", "Widget.", choices=KINDS)
    fraction: float = option(0.5, "A fraction.", min=0, below=1, fixed_on_resume=True)
    tags: list[str] = option(help="Tags.", default_factory=lambda: ["a"])
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def test_declarations_give_flags_types_and_defaults():
    decls = {d.name: d for d in declared(Owner)}
    assert decls["fraction"].flag == "--fraction" and decls["fraction"].type is float
    assert decls["tags"].is_list and decls["tags"].default == ["a"]
    assert option_names(Owner) == {"name", "widget", "fraction", "tags"}
    assert set(plugin_options(Owner)) == {"radius", "side", "corners"}


@pytest.mark.parametrize("values, message", [
    ({}, "missing option --name: Required."),
    ({"name": "x", "fraction": 1.0}, "--fraction must be in [0, 1), got 1.0"),
    ({"name": "x", "fraction": float("nan")}, "--fraction must be in [0, 1), got nan"),
    ({"name": "x", "fraction": "half"}, "--fraction must be of type float, got 'half'"),
    ({"name": "x", "widget": "blob"}, "unknown widget 'blob': use round, box"),
    ({"name": "x", "radius": 0}, "--radius must be a positive finite number, got 0"),
    ({"name": "x", "widget": "box", "side": 11}, "--side must be in [1, 10], got 11"),
    ({"name": "x", "widget": "box", "corners": "soft"}, "unknown --corners 'soft': use sharp, Round"),
    ({"name": "x", "widget": "box", "radius": 2.0}, "--radius goes with --widget round, not --widget box "
                                                    "(it is an option of the widget round)"),
])
def test_bad_values_are_refused_by_name(values, message):
    with pytest.raises(AnasError) as error:
        build(Owner, values)
    assert message in str(error.value)


def test_plugin_options_of_the_selected_plugin_only():
    owner = build(Owner, {"name": "x", "widget": "BOX", "side": 3, "corners": "round", "fraction": 0})
    assert owner.widget == "box" and owner.fraction == 0.0 and isinstance(owner.fraction, float)
    assert owner.options_for("widget") == BoxOptions(side=3, corners="Round")  # choices read without case
    assert owner.to_dict() == {"name": "x", "widget": "box", "fraction": 0.0, "tags": ["a"], "side": 3,
                               "corners": "Round"}
    # a default value of an unselected plug-in's option is no choice: files written with every option load
    assert build(Owner, {"name": "x", "widget": "box", "radius": 1.0}).options_for("widget") == BoxOptions()
    # a saved configuration drops what its plug-ins do not take, and names that are not registered
    saved = build(Owner, {"name": "x", "widget": "box", "radius": 7.0}, strict=False)
    assert saved.options_for("widget") == BoxOptions()
    assert build(Owner, {"name": "x", "widget": "gone"}, strict=False).plugins == {}
    assert updated(owner, widget="round").to_dict() == {"name": "x", "widget": "round", "fraction": 0.0,
                                                        "tags": ["a"], "radius": 1.0}


def test_yaml_keys_and_the_yaml_form_of_a_run():
    assert values_from_mapping({"side-length": 1, "old": 2}, {"side_length"}, "c.yaml", retired={"old"}) == \
        {"side_length": 1}
    with pytest.raises(AnasError, match="config c.yaml: unknown option 'colour'"):
        values_from_mapping({"colour": 1}, {"side"}, "c.yaml")
    with pytest.raises(AnasError, match="must be a YAML mapping"):
        values_from_mapping([1, 2], {"side"}, "c.yaml")
    owner = build(Owner, {"name": "x", "widget": "box", "tags": "b"})
    text = to_yaml(owner)
    assert "# widget box (--widget)\nside: 2\ncorners: sharp\n" in text
    assert build(Owner, yaml.safe_load(text)) == owner


def test_resume_rules_name_every_changed_option():
    check_unchanged(Owner, {"fraction": 0.5, "name": "x"}, {"fraction": 0.5, "name": "y"}, "run r", "start anew")
    with pytest.raises(AnasError, match=r"^run r was made with --fraction 0.5, not 0.25: start anew$"):
        check_unchanged(Owner, {"fraction": 0.5}, {"fraction": 0.25}, "run r", "start anew")


def test_no_option_of_the_loop_belongs_to_a_single_plugin():
    """The loop's configuration holds what the loop owns; each plug-in's options are
    declared in the plug-in's own module."""
    from anas.train.config import TrainConfig

    owners = {
        "queue_size": "anas.train.objectives.contrastive", "temperature": "anas.train.objectives.contrastive",
        "ema_momentum": "anas.train.regularizers.teacher", "cross_path": "anas.train.regularizers.teacher",
        "cross_path_weight": "anas.train.regularizers.teacher", "eval_weights": "anas.train.regularizers.teacher",
        "flops_target": "anas.train.samplers.fpnas", "fpnas_beta": "anas.train.samplers.fpnas",
        "fpnas_lambda": "anas.train.samplers.fpnas", "fpnas_switch_epoch": "anas.train.samplers.fpnas",
        "prior_samples": "anas.train.samplers.attentive", "flops_step": "anas.train.samplers.attentive",
        "predictor": "anas.train.estimators.predictor", "data_dir": "anas.data.dataset", "download": "anas.data.dataset",
    }
    assert not set(owners) & option_names(TrainConfig)
    declared_by = {name: decl.owner.__module__ for name, (decl, _) in plugin_options(TrainConfig).items()}
    assert {name: declared_by[name] for name in owners} == owners
    from anas.evaluate.predict_fit import PredictFitOptions

    assert plugin_options(PredictFitOptions)["bn_reduce"][0].owner.__module__ == "anas.predict.kinds.bn"
