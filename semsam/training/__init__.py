"""Training losses: per-prompt Hungarian matching and the many-to-many multi-choice loss."""

from semsam.training.losses import LossWeights, MultiChoiceLoss
from semsam.training.matching import HungarianMatcher, MatchCosts, MatchIndices

__all__ = ["HungarianMatcher", "LossWeights", "MatchCosts", "MatchIndices", "MultiChoiceLoss"]
