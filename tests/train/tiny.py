"""A training config small enough for tests (a few seconds on this CPU)."""
from dapo_fast.train.config import config_from_dict


def tiny_config(tmp_path, method: str = "wwbl", **sections):
    data = {
        "method": method,
        "data": dict(root=str(tmp_path / "data"), num_train=64, num_val=4, num_test=24, image_size=32),
        "model": dict(dim=16, cnn_width=8, text_width=16, decoder_width=8),
        "optim": dict(lr=0.01, warmup_steps=2),
        "curriculum": dict(stage_epochs=0.5, warmup_steps=3),
        "train": dict(out_dir=str(tmp_path / "run"), batch_size=16, max_steps=8, compile=False, log_every=2,
                      ckpt_every=0, progress=False),
    }
    for section, values in sections.items():
        data[section] = dict(data.get(section, {}), **values)
    return config_from_dict(data)
