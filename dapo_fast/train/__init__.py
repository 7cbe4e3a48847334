"""Training: config, curriculum, loop, checkpoints, DDP."""
from dapo_fast.train.config import Config, ConfigError, load_config
from dapo_fast.train.checkpoint import CheckpointError

__all__ = ["Config", "ConfigError", "load_config", "CheckpointError"]
