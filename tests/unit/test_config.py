import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlgate import config
from mlgate.adapters import optuna_study
from mlgate.config import ConfigError
from mlgate.modelling import clustering, models
from mlgate.modelling.data import ColumnSpec, Contract, DataSpec, SourceSpec
from mlgate.stages.split import SplitParams


def _set(section: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        section = section[part]
    section[path[-1]] = value


def _delete(section: dict, path: tuple[str, ...]) -> None:
    for part in path[:-1]:
        section = section[part]
    del section[path[-1]]


def test_build_makes_nested_dataclasses(data_section):
    spec = config.build(DataSpec, data_section, "data")

    assert spec.source == SourceSpec(kind="file", path="data/source/tiny.csv", format="csv")
    assert isinstance(spec.contract, Contract)
    assert spec.contract.columns["tenure"] == ColumnSpec(type="integer")
    assert spec.contract.columns["charges"] == ColumnSpec(type="float", max_missing_share=0.5)
    assert spec.contract.min_rows == 3


def test_build_uses_defaults_for_absent_optional_keys(data_section):
    del data_section["current_path"]
    del data_section["contract"]["max_missing_share"]
    del data_section["source"]["format"]

    spec = config.build(DataSpec, data_section, "data")

    assert spec.current_path is None
    assert spec.contract.max_missing_share == 0.0
    assert spec.source.format == "csv"


def test_build_widens_an_int_to_a_float_field(data_section):
    data_section["contract"]["max_missing_share"] = 0

    spec = config.build(DataSpec, data_section, "data")

    assert isinstance(spec.contract.max_missing_share, float)


def test_build_reads_the_committed_data_config(project_root):
    values = yaml.safe_load((project_root / "conf/data/telco_churn.yaml").read_text())

    spec = config.build(DataSpec, values, "data")

    assert (spec.target, spec.positive_class, spec.metric) == ("churn", "Yes", "roc_auc")
    assert spec.contract.columns["total_charges"].max_missing_share == 0.01
    assert "churn" not in spec.features
    assert "tenure" in spec.numeric_features
    assert "contract" in spec.categorical_features


@pytest.mark.parametrize(
    "path, dotted_key",
    [
        (("contract", "columns"), "data.contract.columns"),
        (("source", "kind"), "data.source.kind"),
        (("target",), "data.target"),
        (("contract", "columns", "tenure", "type"), "data.contract.columns.tenure.type"),
    ],
)
def test_build_names_a_missing_key(data_section, path, dotted_key):
    _delete(data_section, path)

    with pytest.raises(ConfigError, match=re.escape(f"'{dotted_key}'")):
        config.build(DataSpec, data_section, "data")


def test_a_file_source_without_a_path_names_the_key(data_section):
    _delete(data_section, ("source", "path"))

    with pytest.raises(ValueError, match=re.escape("data.source.path is required for a file source")):
        config.build(DataSpec, data_section, "data")


def test_build_names_an_unknown_key_and_its_section(data_section):
    data_section["contract"]["min_row"] = 10

    with pytest.raises(ConfigError, match=r"\['min_row'\] in 'data\.contract'"):
        config.build(DataSpec, data_section, "data")


@pytest.mark.parametrize(
    "path, value, dotted_key",
    [
        (("contract", "min_rows"), "500", "data.contract.min_rows"),
        (("contract", "min_rows"), True, "data.contract.min_rows"),
        (("contract", "min_rows"), 1.5, "data.contract.min_rows"),
        (("contract", "max_missing_share"), "none", "data.contract.max_missing_share"),
        (("contract", "columns", "tenure", "type"), 3, "data.contract.columns.tenure.type"),
        (
            ("contract", "columns", "charges", "max_missing_share"),
            "1%",
            "data.contract.columns.charges.max_missing_share",
        ),
        (("contract", "columns"), ["tenure"], "data.contract.columns"),
        (("source",), "data.csv", "data.source"),
        (("positive_class",), 1, "data.positive_class"),
    ],
)
def test_build_names_a_key_of_the_wrong_type(data_section, path, value, dotted_key):
    _set(data_section, path, value)

    with pytest.raises(ConfigError, match=re.escape(f"'{dotted_key}'")):
        config.build(DataSpec, data_section, "data")


def test_section_names_the_missing_dotted_key():
    with pytest.raises(ConfigError, match=re.escape("'split.test_size'")):
        config.section({"split": {"current_size": 0.2}}, "split.test_size")


def test_load_builds_one_section():
    params = {"split": {"test_size": 0.25, "current_size": 0.1}}

    assert config.load(SplitParams, "split", params) == SplitParams(test_size=0.25, current_size=0.1)


def test_compose_reproduces_the_committed_params_yaml(project_root):
    composed = config.compose(project_root / "conf")
    committed = (project_root / "params.yaml").read_text()

    assert yaml.safe_load(composed) == yaml.safe_load(committed)
    assert composed == committed


def test_compose_applies_overrides(project_root):
    params = yaml.safe_load(config.compose(project_root / "conf", ["model=[linear]", "search.n_trials=3"]))

    assert list(params["model"]) == ["linear"]
    assert params["search"]["n_trials"] == 3


CONF = Path(__file__).resolve().parents[2] / "conf"
SEARCH_CHOICES = sorted(p.stem for p in (CONF / "search").glob("*.yaml"))
MODEL_CHOICES = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("search_choice", SEARCH_CHOICES)
def test_composed_sections_load_as_typed_settings(project_root, search_choice):
    params = yaml.safe_load(config.compose(project_root / "conf", [f"search={search_choice}"]))

    spec = config.load(DataSpec, "data", params)
    settings = config.load(optuna_study.SearchSettings, "search", params)
    spaces = optuna_study.parse_spaces(config.section(params, "model"))

    assert spec.name == params["data"]["name"]
    assert settings.sampler == search_choice
    assert [s.family for s in spaces] == list(params["model"])
    assert config.load(SplitParams, "split", params).test_size == params["split"]["test_size"]


def test_every_sampler_and_every_family_has_a_conf_file():
    assert sorted(optuna_study.SAMPLERS) == SEARCH_CHOICES
    assert sorted([*models.FAMILIES, *clustering.FAMILIES]) == MODEL_CHOICES


@pytest.mark.parametrize("search_choice", SEARCH_CHOICES)
def test_every_search_composes_with_every_family(project_root, search_choice):
    params = yaml.safe_load(
        config.compose(project_root / "conf", [f"search={search_choice}", f"model=[{','.join(MODEL_CHOICES)}]"])
    )

    settings = config.load(optuna_study.SearchSettings, "search", params)
    spaces = optuna_study.parse_spaces(config.section(params, "model"))

    assert settings.sampler == search_choice
    assert [s.family for s in spaces] == MODEL_CHOICES
    for space in spaces:
        grid = {
            name: optuna_study.grid_values(spec, settings.grid_points, space.first_trial.get(name))
            for name, spec in space.space.items()
        }
        assert all(space.first_trial[name] in values for name, values in grid.items() if name in space.first_trial)


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_each_familys_first_trial_is_complete_and_fits_the_tiny_frame(project_root, family, mixed_frame, binary_spec):
    from mlgate.modelling.data import target_vector

    params = yaml.safe_load(config.compose(project_root / "conf", [f"model=[{family}]"]))
    [space] = optuna_study.parse_spaces(config.section(params, "model"))
    frame = mixed_frame(60, with_missing=True)

    active = {
        name for name, spec in space.space.items() if all(space.first_trial.get(k) in v for k, v in spec.when.items())
    }
    pipeline = models.build(family, {**space.fixed, **space.first_trial}, binary_spec).fit(
        frame, target_vector(frame, binary_spec)
    )
    _, probability = models.predict(pipeline, frame.assign(plan="platinum"), "binary")

    assert set(space.first_trial) == active
    assert np.isfinite(probability).all()


def test_the_zero_shot_portfolio_holds_whole_configurations_inside_their_familys_space(project_root):
    """Each entry is a point the search itself could draw: every parameter its family searches given the
    others (conditional ones only when active), every value inside the space."""
    from mlgate.stages import tune

    families = sorted(models.FAMILIES)
    overrides = ["portfolio=zero_shot", f"model=[{','.join(families)}]"]
    params = yaml.safe_load(config.compose(project_root / "conf", overrides))
    spaces = {space.family: space for space in optuna_study.parse_spaces(config.section(params, "model"))}
    portfolio = tune.portfolio_configurations(params["portfolio"])

    assert len(portfolio) >= 3
    for family, searched in portfolio:
        space = spaces[family]
        active = {name for name, spec in space.space.items() if all(searched.get(k) in v for k, v in spec.when.items())}
        assert set(searched) == active, family
        assert len(optuna_study.prior_trials([space], [(family, searched, 0.0)])) == 1, (family, searched)


def test_random_configurations_are_seeded_draws_inside_the_space(project_root):
    params = yaml.safe_load(config.compose(project_root / "conf", ["model=[catboost]"]))
    [space] = optuna_study.parse_spaces(config.section(params, "model"))

    drawn = optuna_study.random_configurations(space, 20, seed=3)

    assert drawn == optuna_study.random_configurations(space, 20, seed=3)
    assert drawn != optuna_study.random_configurations(space, 20, seed=4)
    assert len(optuna_study.prior_trials([space], [("catboost", d, 0.0) for d in drawn])) == 20
    # keep_share is drawn only when a selection method is
    assert all(("keep_share" in d) == (d["selection"] != "none") for d in drawn)
    assert {d["selection"] for d in drawn} == {"none", "mutual_info", "model"}


@pytest.mark.parametrize("family", clustering.FAMILIES)
def test_each_clustering_familys_first_trial_is_complete_and_segments_the_tiny_frame(project_root, family, mixed_frame):
    params = yaml.safe_load(config.compose(project_root / "conf", [f"model=[{family}]"]))
    [space] = optuna_study.parse_spaces(config.section(params, "model"))
    frame = mixed_frame(60, with_missing=True).drop(columns=["churn"])

    model = clustering.Segmenter(
        family, {**space.fixed, **space.first_trial}, ["tenure", "charges"], ["plan"], seed=0
    ).fit(frame)

    assert set(space.first_trial) == set(space.space)
    assert len(model.predict(frame.assign(plan="platinum"))) == 60


DATASETS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


def test_every_dataset_has_a_preset():
    assert sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")) == DATASETS


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_preset_selects_its_datasets_data_and_gate_policy(project_root, dataset):
    params = yaml.safe_load(config.compose(project_root / "conf", [f"experiment={dataset}"]))

    assert params["data"] == yaml.safe_load((CONF / "data" / f"{dataset}.yaml").read_text())
    assert params["gate"] == yaml.safe_load((CONF / "gate" / f"{dataset}.yaml").read_text())
    assert params["gate"]["metric"] == params["data"]["metric"]


def test_the_default_run_is_the_telco_churn_preset(project_root):
    conf = project_root / "conf"

    assert config.compose(conf) == config.compose(conf, ["experiment=telco_churn"])


def test_a_dataset_chosen_by_hand_with_another_datasets_policy_in_another_metric_is_refused(project_root):
    with pytest.raises(ConfigError) as refused:
        config.compose(project_root / "conf", ["data=ames"])

    message = str(refused.value)
    assert "data=ames with gate=telco_churn" in message
    assert "stated in roc_auc, and 'ames' is scored in rmse" in message
    assert "choose experiment=ames" in message


def test_a_dataset_chosen_by_hand_with_another_datasets_policy_in_its_metric_is_warned_about(project_root):
    warned = []

    config.compose(project_root / "conf", ["data=credit_data"], warn=warned.append)

    [message] = warned
    assert message.startswith("data=credit_data with gate=telco_churn: conf/gate/telco_churn.yaml is the gate policy")
    with pytest.warns(config.PairingWarning, match="data=credit_data with gate=telco_churn"):
        config.compose(project_root / "conf", ["data=credit_data"])


def test_a_dataset_and_its_own_policy_chosen_by_hand_compose_quietly(project_root, recwarn):
    params = yaml.safe_load(config.compose(project_root / "conf", ["data=ames", "gate=ames"]))

    assert (params["data"]["name"], params["gate"]["metric"]) == ("ames", "rmse")
    assert not [w for w in recwarn if issubclass(w.category, config.PairingWarning)]


def test_a_policy_not_named_after_a_dataset_declares_none(project_root, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(project_root / "conf", conf)
    (conf / "gate" / "strict.yaml").write_text((conf / "gate" / "ames.yaml").read_text())

    params = yaml.safe_load(config.compose(conf, ["data=diamonds", "gate=strict"]))

    assert params["gate"]["metric"] == "rmse"


def test_a_new_dataset_without_a_policy_is_told_to_copy_one(project_root, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(project_root / "conf", conf)
    (conf / "data" / "houses.yaml").write_text((conf / "data" / "ames.yaml").read_text())

    with pytest.raises(ConfigError, match=r"copy conf/gate/telco_churn\.yaml to conf/gate/houses\.yaml"):
        config.compose(conf, ["data=houses"])
