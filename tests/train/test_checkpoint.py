"""Checkpoints and run directories: nothing in a checkpoint runs, a flipped byte is caught, a run is
never silently replaced, a killed write leaves the old file and its temp file is cleaned up."""
import copy
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

import dapo_fast
import dapo_fast.safe_io as safe_io
from dapo_fast.cli import main
from dapo_fast.safe_io import FileFormatError, atomic_write, remove_stale_temp_files
from dapo_fast.train import loop
from dapo_fast.train.checkpoint import (CheckpointError, load_checkpoint, payload_digest, rng_state,
                                        save_checkpoint, set_rng_state)
from dapo_fast.train.demo import run_ablation, run_demo
from tests.hostile import planted_pickle, planted_torch_file, unpickling_runs_code
from tests.train.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dapo_fast.__file__)))


def small_state():
    """A checkpoint payload shaped like the loop's: model, AdamW after a step, LambdaLR, RNG, config."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.randn(4, 5)).sum().backward()
    opt.step()
    sched.step()
    return dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                rng=rng_state(), step=1, config={"method": "wwbl", "train": {"seed": 0}},
                tokenizer={"vocab": ["<pad>", "<unk>", "red"]}, method={}, world_size=1)


def test_checkpoint_round_trips_and_opens_with_plain_weights_only_load(tmp_path):
    state = small_state()
    save_checkpoint(str(tmp_path / "c.pt"), state)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # what anyone can do with the file
    assert raw["format"] == "dapo_fast.checkpoint/2" and raw["checksum"] == payload_digest(state)
    back = load_checkpoint(str(tmp_path / "c.pt"))
    assert set(back) == set(state) and payload_digest(back) == payload_digest(state)
    for k, v in state["optimizer"]["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][k], v)


@pytest.mark.parametrize("value, kind", [
    (np.zeros(3), "numpy.ndarray"),
    (np.float64(1.0), "numpy.float64"),  # a float subclass that weights_only would refuse on load
    (object(), "builtins.object"),
    ({1, 2}, "builtins.set"),
])
def test_save_refuses_values_a_safe_load_cannot_rebuild(tmp_path, value, kind):
    state = dict(small_state(), method={"teacher": [value]})
    with pytest.raises(CheckpointError, match=rf"checkpoint\['method'\]\['teacher'\]\[0\]' has type {kind}"):
        save_checkpoint(str(tmp_path / "c.pt"), state)
    assert not os.listdir(tmp_path)


def test_rng_state_round_trips_every_generator():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    saved = rng_state()
    expected = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(saved)
    got = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert np.array_equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def _flip(path, pos, out):
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 0x10
    out.write_bytes(bytes(raw))


def test_a_flipped_byte_in_the_optimizer_state_is_an_integrity_error(tmp_path):
    state = small_state()
    save_checkpoint(str(tmp_path / "c.pt"), state)
    exp_avg = state["optimizer"]["state"][0]["exp_avg"].numpy().tobytes()
    pos = (tmp_path / "c.pt").read_bytes().find(exp_avg)
    assert pos > 0
    _flip(tmp_path / "c.pt", pos + 5, tmp_path / "flipped.pt")
    # torch itself does not notice: the file loads, with a different optimiser state
    silently = torch.load(tmp_path / "flipped.pt", weights_only=True)
    assert not torch.equal(silently["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match=r"flipped\.pt failed its integrity check"):
        load_checkpoint(str(tmp_path / "flipped.pt"))


def test_no_flipped_byte_gives_a_silently_different_checkpoint(tmp_path):
    state = small_state()
    save_checkpoint(str(tmp_path / "c.pt"), state)
    size = (tmp_path / "c.pt").stat().st_size
    digest, refused, same = payload_digest(state), 0, 0
    for pos in range(0, size, size // 200):  # 200 positions spread over the file
        _flip(tmp_path / "c.pt", pos, tmp_path / "f.pt")
        try:
            back = load_checkpoint(str(tmp_path / "f.pt"))
        except CheckpointError:
            refused += 1
            continue
        assert payload_digest(back) == digest, f"byte {pos} changed the checkpoint silently"
        same += 1  # a byte the payload does not depend on (zip metadata, padding)
    assert refused > 0


@pytest.mark.parametrize("make, says", [
    (planted_torch_file, "was refused: it holds a pickled 'io.open'"),  # torch.save's zip format
    (lambda m, w: planted_pickle(m, w, protocol=2), "was refused: it holds a pickled 'io.open'"),  # torch's legacy format
    (lambda m, w: planted_pickle(m, w, protocol=5), "is corrupt or unreadable (Unsupported operand"),  # no torch file
])
@pytest.mark.parametrize("wrapped_in", [lambda p: p, lambda p: {"format": "dapo_fast.checkpoint/2", "model": p}])
def test_eval_of_a_planted_pickle_runs_nothing(tmp_path, capsys, make, says, wrapped_in):
    marker = tmp_path / "pwned"
    data = make(marker, wrapped_in)
    assert unpickling_runs_code(data, marker)  # the file is live: unpickling it naively creates marker
    (tmp_path / "evil.pt").write_bytes(data)
    assert main(["eval", "--checkpoint", str(tmp_path / "evil.pt")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert f"evil.pt {says}" in err and "Traceback" not in err


def test_resume_from_a_planted_pickle_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(planted_torch_file(marker))
    assert main(["train", "--set", f"train.out_dir={tmp_path / 'run'}", "--set", f"data.root={tmp_path / 'data'}",
                 "--resume", str(tmp_path / "evil.pt")]) == 2
    assert not marker.exists()
    assert "evil.pt was refused" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # refused before any work


def test_a_checkpoint_with_numpy_rng_state_is_refused_with_a_hint(tmp_path):
    torch.save(dict(model={}, step=0, config={}, rng=dict(numpy=np.random.get_state())), tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"numpy.*before format 2"):
        load_checkpoint(str(tmp_path / "old.pt"))


def test_checksummed_but_malformed_payloads_are_named(tmp_path):
    for bad, match in [(dict(small_state(), step=-1), "'step' must be a non-negative int"),
                       (dict(small_state(), step=1.0), "'step' must be a non-negative int"),
                       (dict(small_state(), model={"w": [1.0]}), "'model' must map parameter names to tensors"),
                       (dict(small_state(), config=[]), "'config' must be a dict")]:
        save_checkpoint(str(tmp_path / "c.pt"), bad)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(str(tmp_path / "c.pt"))


# ---------------------------------------------------------------------------------- run directories
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run of 4 steps (data cached beside it); tests copy it."""
    base = tmp_path_factory.mktemp("finished")
    loop.train(tiny_config(base, train=dict(max_steps=4)))
    return base


def _copy(finished_run, tmp_path):
    shutil.copytree(finished_run / "run", tmp_path / "run")
    return tmp_path / "run"


def _tiny(tmp_path, data_from=None, **train):
    """The finished run's config with its run directory under ``tmp_path`` (and its data, when given)."""
    data = dict(root=str((data_from or tmp_path) / "data"))
    return tiny_config(tmp_path, data=data, train=dict(dict(max_steps=4), **train))


def test_training_into_a_run_is_refused_and_changes_nothing(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    before = {name: (run / name).read_bytes() for name in ("last.pt", "metrics.jsonl")}
    with pytest.raises(FileExistsError, match=rf"{run} already holds a run \(last.pt, metrics.jsonl\); pass --resume"):
        loop.train(_tiny(tmp_path, finished_run))
    assert {name: (run / name).read_bytes() for name in before} == before
    # the CLI says the same, cleanly
    assert main(["train", "--set", f"train.out_dir={run}", "--set", f"data.root={finished_run / 'data'}",
                 "--set", "train.max_steps=4", "--no-compile"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and "Traceback" not in err
    assert {name: (run / name).read_bytes() for name in before} == before


def test_resume_from_another_run_into_a_run_is_refused(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    shutil.copytree(run, tmp_path / "other")
    with pytest.raises(FileExistsError, match="already holds a run"):
        loop.train(_tiny(tmp_path, finished_run), resume=str(tmp_path / "other" / "last.pt"))


def test_a_run_without_checkpoint_is_refused_without_suggesting_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 2}\n')
    with pytest.raises(FileExistsError, match=r"holds a run \(metrics.jsonl\); pass --overwrite") as err:
        loop.train(_tiny(tmp_path))
    assert "--resume" not in str(err.value)


def test_overwrite_replaces_the_run(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    (run / "metrics.jsonl").write_text('{"step": 2, "loss": 123.0}\n{"step": 4, "loss": 123.0}\n{"step": 6}\n')
    out = loop.train(_tiny(tmp_path, finished_run, max_steps=2), overwrite=True)
    assert out["step"] == 2 and load_checkpoint(str(run))["step"] == 2
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [2] and rows[0]["loss"] != 123.0


def test_resume_of_the_run_in_out_dir_continues_it(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    out = loop.train(_tiny(tmp_path, finished_run), resume=str(run))  # already finished: nothing to do, nothing lost
    assert out["step"] == 4
    assert [json.loads(line)["step"] for line in open(run / "metrics.jsonl")] == [2, 4]


def test_a_truncated_last_metrics_line_is_tolerated_on_resume(tmp_path):
    full = loop.train(_tiny(tmp_path / "a", max_steps=8, ckpt_every=4))
    loop.train(_tiny(tmp_path / "b", max_steps=8, ckpt_every=4, stop_after=6))
    with open(tmp_path / "b" / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "loss": 0.4')  # the interrupted run was killed mid-write
    resumed = loop.train(_tiny(tmp_path / "b", max_steps=8, ckpt_every=4), resume=str(tmp_path / "b" / "run"))
    assert resumed["step"] == full["step"] == 8

    def rows(p):
        return [{k: v for k, v in json.loads(x).items() if k != "elapsed"} for x in open(p)]
    assert rows(tmp_path / "b" / "run" / "metrics.jsonl") == rows(tmp_path / "a" / "run" / "metrics.jsonl")


def test_a_corrupt_metrics_line_other_than_the_last_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n{"step": 4\n{"step": 6}\n')
    with pytest.raises(FileFormatError, match=r"metrics.jsonl line 2 is not a JSON record"):
        loop.metrics_up_to(str(path), 4)
    path.write_text('{"step": 2}\n{"step": 4}\n{"step": 6}\n{"st')
    assert loop.metrics_up_to(str(path), 4) == [b'{"step": 2}\n', b'{"step": 4}\n']
    path.write_text('{"step": 2}\n{"step": 4}')  # complete record, newline lost
    assert loop.metrics_up_to(str(path), 4) == [b'{"step": 2}\n', b'{"step": 4}\n']


def test_resume_refuses_state_that_does_not_fit_the_run(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    good = load_checkpoint(str(run))
    bad_opt, bad_sched = copy.deepcopy(good), copy.deepcopy(good)
    bad_opt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)
    bad_sched["scheduler"]["last_epoch"] = "4"
    for bad, match in [(bad_opt, "optimizer state 'exp_avg'"), (bad_sched, "scheduler.last_epoch")]:
        save_checkpoint(str(tmp_path / "bad.pt"), bad)
        with pytest.raises(CheckpointError, match=match):
            loop.train(_tiny(tmp_path, finished_run, out_dir=str(tmp_path / "new")), resume=str(tmp_path / "bad.pt"))


def test_demo_twice_continues_the_first_run(tmp_path):
    logs = []
    cfg = _tiny(tmp_path)
    first = run_demo(cfg, log=logs.append)
    stamp = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    second = run_demo(_tiny(tmp_path), log=logs.append)
    assert any("resumed from" in str(line) for line in logs)
    assert second["pointing"] == first["pointing"] and second["step"] == 4
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == stamp
    # another config is not silently trained over the first run
    with pytest.raises(CheckpointError, match=r"holds a run that this one cannot continue.*--overwrite"):
        run_demo(_tiny(tmp_path, max_steps=2), log=logs.append)
    assert load_checkpoint(str(tmp_path / "run"))["step"] == 4
    assert run_demo(_tiny(tmp_path, max_steps=2), log=logs.append, overwrite=True)["step"] == 2


# ---------------------------------------------------------------------------------- atomic writes
_KILLED_WRITER = """
import sys, time
from dapo_fast.safe_io import atomic_write
def write(f):
    f.write(b"half of a new checkpoint")
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
atomic_write(sys.argv[1], write)
"""


def test_a_killed_write_keeps_the_old_file_and_the_next_start_removes_its_temp(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    old = (run / "last.pt").read_bytes()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(run / "last.pt")], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temps = [n for n in os.listdir(run) if n.startswith(".last.pt~tmp~")]
    assert len(temps) == 1 and (run / "last.pt").read_bytes() == old
    loop.train(_tiny(tmp_path, finished_run), resume=str(run))
    assert not [n for n in os.listdir(run) if "~tmp~" in n]


def test_stale_temp_files_of_dead_writers_only_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    names = {"dead": f".last.pt~tmp~{dead.pid}~00~{host}", "live": f".last.pt~tmp~{os.getppid()}~01~{host}",
             "elsewhere": f".last.pt~tmp~{dead.pid}~02~another-host", "other target": f".x.pt~tmp~{dead.pid}~03~{host}"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    removed = remove_stale_temp_files(str(tmp_path / "last.pt"))
    assert removed == [str(tmp_path / names["dead"])]
    assert sorted(os.listdir(tmp_path)) == sorted(n for k, n in names.items() if k != "dead")


def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(safe_io.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    monkeypatch.setattr(safe_io.os, "fsync", lambda fd: (events.append(
        "fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), real_fsync(fd)))
    atomic_write(str(tmp_path / "f"), lambda f: f.write(b"x"))
    assert events == ["fsync file", "replace", "fsync dir"]


def test_writers_of_one_target_never_share_a_temp_file(tmp_path):
    target = str(tmp_path / "split.pt")

    def outer(f):
        f.write(b"outer")
        atomic_write(target, lambda g: g.write(b"inner"))  # a second writer finishing meanwhile

    atomic_write(target, outer)
    assert open(target, "rb").read() == b"outer" and os.listdir(tmp_path) == ["split.pt"]


def test_ablation_again_continues_its_runs(tmp_path):
    logs = []
    cfg = _tiny(tmp_path, max_steps=2)
    first = run_ablation(cfg, ["none"], seeds=[0], log=logs.append)
    logs.clear()
    second = run_ablation(_tiny(tmp_path, max_steps=2), ["none"], seeds=[0], log=logs.append)
    assert any("resumed from" in str(line) and "seed0" in str(line) for line in logs)
    assert second["none"]["seeds"][0]["pointing"] == first["none"]["seeds"][0]["pointing"]
