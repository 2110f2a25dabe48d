"""Fine-tuning regularizers, each a module with one call: ``total, stats = reg(ce, step)``."""

from ptr_lightning.regularizers.base import Regularizer, StepTensors
from ptr_lightning.regularizers.none import NoRegularizer
from ptr_lightning.regularizers.pseudo_task import FeatureNormPenalty, PseudoTask

__all__ = ["FeatureNormPenalty", "NoRegularizer", "PseudoTask", "Regularizer", "StepTensors"]
