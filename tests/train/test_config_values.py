"""Config values are checked where they are read, and `--set` values fail like the file does."""
import pytest

from dapo_fast.cli import main
from dapo_fast.train.config import ConfigError, apply_overrides, config_from_dict, load_config


@pytest.mark.parametrize("data, match", [
    ({"optim": {"lr": 0}}, r"'optim\.lr' must be > 0, got 0\.0"),
    ({"optim": {"lr": -0.1}}, r"'optim\.lr' must be > 0"),
    ({"optim": {"lr": float("nan")}}, r"'optim\.lr' must be a finite number, got nan"),
    ({"optim": {"lr": float("inf")}}, r"'optim\.lr' must be a finite number, got inf"),
    ({"optim": {"lr": 10**400}}, r"'optim\.lr' must be a finite number, got inf"),
    ({"wwbl": {"tau": float("nan")}}, r"'wwbl\.tau' must be a finite number"),
    ({"wwbl": {"box_threshold": 0}}, r"'wwbl\.box_threshold' must be in \(0, 1\], got 0"),
    ({"wwbl": {"box_threshold": 1.5}}, r"'wwbl\.box_threshold' must be in \(0, 1\]"),
    ({"optim": {"weight_decay": -1e-4}}, r"'optim\.weight_decay' must be >= 0"),
    ({"optim": {"warmup_steps": -1}}, r"'optim\.warmup_steps' must be >= 0"),
    ({"train": {"log_every": 0}}, r"'train\.log_every' must be >= 1, got 0"),
    ({"train": {"ckpt_every": -5}}, r"'train\.ckpt_every' must be >= 0"),
    ({"train": {"stop_after": -1}}, r"'train\.stop_after' must be >= 0"),
    ({"train": {"seed": -1}}, r"'train\.seed' must be >= 0"),
    ({"train": {"seed": 2**64}}, r"'train\.seed' must be < 2\*\*63"),
    ({"data": {"num_test": 0}}, r"'data\.num_test' must be >= 1"),
    ({"data": {"seed": -3}}, r"'data\.seed' must be >= 0"),
    ({"model": {"phrase_len": 0}}, r"'model\.phrase_len' must be >= 1"),
    ({"curriculum": {"subsets": []}}, r"'curriculum\.subsets' must hold at least one"),
    ({"curriculum": {"subsets": [[1, 2, 3]]}}, r"'curriculum\.subsets\[0\]' must be \[lo, hi\]"),
    ({"curriculum": {"subsets": [[-2, 3]]}}, r"'curriculum\.subsets\[0\]' must be \[lo, hi\] with 0 <= lo"),
    ({"curriculum": {"stage_epochs": 0}}, r"'curriculum\.stage_epochs' must be > 0"),
    ([1, 2], r"a config must be a mapping of sections, got list"),
])
def test_values_out_of_range_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_zero_ckpt_every_still_means_off():
    assert config_from_dict({"train": {"ckpt_every": 0}}).train.ckpt_every == 0


@pytest.mark.parametrize("override, match", [
    ("train.seed=!!python/object:os.system", r"override 'train\.seed=!!python/object:os\.system': the value is not valid YAML"),
    ("train.seed=!!python/object/apply:os.system ['touch x']", r"the value is not valid YAML"),
    ("x=[1", r"override 'x=\[1': the value is not valid YAML"),
    ("train.seed={a: ", r"the value is not valid YAML"),
    ("train.seed", r"override 'train\.seed' must look like section\.key=value"),
    ("=3", r"must look like section\.key=value"),
    ("train..seed=3", r"must look like section\.key=value"),
    ("train.=3", r"must look like section\.key=value"),
    ("train.seed.x=3", r"'seed' is not a section"),
])
def test_bad_overrides_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(apply_overrides({"train": {"seed": 1}}, [override]))


@pytest.mark.parametrize("text, match", [
    ("train: !!python/object/apply:os.system ['touch pwned']\n", r"is not valid YAML"),
    ("train: [1\n", r"is not valid YAML"),
    ("- 1\n- 2\n", r"must hold a mapping of sections, got list"),
    ("just text\n", r"must hold a mapping of sections, got str"),
])
def test_bad_files_are_config_errors_naming_the_file(tmp_path, text, match):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file {p} {match}"):
        load_config(str(p))
    assert not (tmp_path / "pwned").exists()


def test_unreadable_files_are_config_errors(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"train:\n  out_dir: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml cannot be read"):
        load_config(str(tmp_path / "latin1.yaml"))
    with pytest.raises(ConfigError, match=r"cannot be read"):
        load_config(str(tmp_path))  # a directory


@pytest.mark.parametrize("argv", [
    ["train", "--set", "train.seed=!!python/object:os.system"],
    ["train", "--set", "x=[1"],
    ["demo", "--set", "optim.lr=0"],
    ["ablation", "--set", "train.log_every=0"],
])
def test_cli_reports_bad_set_values_without_traceback(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dapo-fast {argv[0]}: error: ") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_output_paths_stay_as_given():
    cfg = config_from_dict(apply_overrides({}, ["train.out_dir=./a//b/../c", "data.root=~/data"]))
    assert cfg.train.out_dir == "./a//b/../c" and cfg.data.root == "~/data"
