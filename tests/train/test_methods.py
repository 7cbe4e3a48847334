"""Methods as plug-ins of the one loop: config sections, registry, ablation over seeds."""
import pytest

from dapo_fast.cli import main
from dapo_fast.train import methods
from dapo_fast.train.config import ConfigError, config_from_dict, config_to_dict
from dapo_fast.train.demo import run_ablation
from tests.train.tiny import tiny_config


def test_method_section_is_checked_against_the_method_options():
    cfg = config_from_dict({"method": "wwbl", "wwbl": {"tau": 0.2}})
    assert cfg.method == "wwbl" and cfg.options.tau == 0.2
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"unknown config key 'wwbl\.tua'"):
        config_from_dict({"wwbl": {"tua": 0.2}})
    with pytest.raises(ConfigError, match=r"'wwbl\.tau' must be a float"):
        config_from_dict({"wwbl": {"tau": "low"}})


@pytest.mark.parametrize("data, match", [
    ({"method": "nope"}, r"'method' must be one of"),
    ({"method": 3}, r"'method' must be a string"),
    ({"loss": {"tau": 0.1}}, r"unknown config key 'loss'.*section 'wwbl:'"),
    ({"options": {}}, r"unknown config key 'options'"),
])
def test_bad_method_configs_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_every_registered_method_builds_from_its_defaults():
    for name in methods.NAMES:
        cfg = config_from_dict({"method": name})
        assert cfg.method == name and cfg.options == methods.get(name).Options()
        assert set(methods.get(name).ABLATION), f"{name} has no ablation variants"


def test_section_of_another_method_is_refused(monkeypatch):
    monkeypatch.setattr(methods, "NAMES", methods.NAMES + ("other",))
    with pytest.raises(ConfigError, match="section 'other' holds the options of method 'other'"):
        config_from_dict({"method": "wwbl", "other": {}})


def test_ablation_runs_each_variant_per_seed_and_tabulates(tmp_path):
    cfg = tiny_config(tmp_path, train=dict(max_steps=3))
    rows = run_ablation(cfg, ["none"], seeds=[0, 1], log=lambda *_: None)
    assert list(rows) == ["none"] and rows["none"]["seed_ids"] == [0, 1]
    a, b = rows["none"]["seeds"]
    assert a["entities"] == b["entities"] > 0
    assert (tmp_path / "run" / "none" / "seed0" / "last.pt").exists()
    assert (tmp_path / "run" / "none" / "seed1" / "last.pt").exists()
    table = (tmp_path / "run" / "ablation.md").read_text()
    assert "| none |" in table and "±" in table
    with pytest.raises(ConfigError, match="unknown ablation variant"):
        run_ablation(cfg, ["fancy"], seeds=[0])


def test_cli_refuses_unknown_methods(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("method: wwbl\nwwbl:\n  tau: 0.2\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(p), "--method", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["train", "--config", str(p), "--set", "method=nope"]) == 2
    assert "'method' must be one of" in capsys.readouterr().err
