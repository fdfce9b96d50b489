"""semsam: segment and recognise anything at any granularity (Semantic-SAM in plain PyTorch)."""

from semsam.build import build_model, load_model
from semsam.checkpoint import CheckpointError, save_checkpoint
from semsam.config import MODEL_CONFIGS, SemanticInfo, SemanticSamConfig
from semsam.image import read_image
from semsam.modeling import SemanticSam
from semsam.prediction import MaskLabel, Prediction, Prompt
from semsam.predictor import Predictor

__version__ = "0.1.0"

__all__ = [
    "MODEL_CONFIGS",
    "CheckpointError",
    "MaskLabel",
    "Prediction",
    "Predictor",
    "Prompt",
    "SemanticInfo",
    "SemanticSam",
    "SemanticSamConfig",
    "build_model",
    "load_model",
    "read_image",
    "save_checkpoint",
]
