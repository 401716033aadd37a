"""FixATE training: per-user soft prompts fitted with the joint alignment + next-token loss (docs/method.md §3, §5)."""

from .config import TrainConfig
from .run import train

__all__ = ["TrainConfig", "train"]
