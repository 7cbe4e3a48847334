import pytest

from dapo_fast.cli import main
from dapo_fast.train.config import Config, ConfigError, config_from_dict, load_config


def test_defaults_and_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  batch_size: 16\n  compile: false\noptim:\n  lr: 1\ncurriculum:\n  subsets: [[1, 3], [4, 8]]\n")
    cfg = load_config(str(p), ["train.max_steps=7", "model.pretrained=null"])
    assert cfg.train.batch_size == 16 and cfg.train.compile is False and cfg.train.max_steps == 7
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.curriculum.subsets == [[1, 3], [4, 8]]
    assert Config().data.kind == "synthetic"


@pytest.mark.parametrize("data, match", [
    ({"train": {"bach_size": 3}}, r"unknown config key 'train\.bach_size'"),
    ({"trian": {}}, r"unknown config key 'trian'"),
    ({"train": {"batch_size": "64"}}, r"'train\.batch_size' must be an int"),
    ({"train": {"batch_size": 1.5}}, r"'train\.batch_size' must be an int"),
    ({"train": {"compile": 1}}, r"'train\.compile' must be a bool"),
    ({"optim": {"lr": "fast"}}, r"'optim\.lr' must be a float"),
    ({"curriculum": {"subsets": [[1, "x"]]}}, r"'curriculum\.subsets\[0\]\[1\]' must be an int"),
    ({"curriculum": {"subsets": [[3, 1]]}}, r"curriculum\.subsets\[0\]"),
    ({"model": {"backbone": "resnet"}}, r"'model\.backbone' must be one of"),
    ({"train": 5}, r"section 'train' must be a mapping"),
    ({"train": {"batch_size": 0}}, r"'train\.batch_size' must be >= 1"),
])
def test_bad_configs_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_cli_rejects_bad_config_before_training(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  max_step: 10\n")
    assert main(["train", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert "train.max_step" in err and "max_steps" in err
    assert not (tmp_path / "runs").exists()
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_builtin_demo_config_is_configs_demo_yaml():
    # `dapo-fast demo` / `ablation` without --config must run exactly configs/demo.yaml (an installed
    # package does not ship configs/, so the built-in one is the defaults plus eager, one thread)
    import argparse
    import os

    from dapo_fast.cli import config_from_args
    from dapo_fast.train.config import config_to_dict, load_config

    yaml_path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.yaml")
    builtin = config_from_args(argparse.Namespace(config=None, set=[]), builtin_demo=True)
    assert config_to_dict(builtin) == config_to_dict(load_config(yaml_path, []))
    # --set still wins over the built-in settings
    two = config_from_args(argparse.Namespace(config=None, set=["train.threads=2"]), builtin_demo=True)
    assert two.train.threads == 2 and two.train.compile is False
