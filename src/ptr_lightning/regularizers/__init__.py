"""Fine-tuning regularizers, each a module with one call: ``total, stats = reg(ce, step)``."""

from ptr_lightning.regularizers.base import Regularizer, StepTensors, TrainingData
from ptr_lightning.regularizers.bss import BatchSpectralShrinkage
from ptr_lightning.regularizers.co_tuning import CoTuning
from ptr_lightning.regularizers.delta import DELTA
from ptr_lightning.regularizers.feature_norm import FeatureNorm
from ptr_lightning.regularizers.joint_train import JointTraining
from ptr_lightning.regularizers.l2sp import L2SP
from ptr_lightning.regularizers.lwf import LearningWithoutForgetting
from ptr_lightning.regularizers.none import NoRegularizer
from ptr_lightning.regularizers.pairwise_confusion import PairwiseConfusion
from ptr_lightning.regularizers.pseudo_task import FeatureNormPenalty, PseudoTask

__all__ = [
    "DELTA",
    "L2SP",
    "BatchSpectralShrinkage",
    "CoTuning",
    "FeatureNorm",
    "FeatureNormPenalty",
    "JointTraining",
    "LearningWithoutForgetting",
    "NoRegularizer",
    "PairwiseConfusion",
    "PseudoTask",
    "Regularizer",
    "StepTensors",
    "TrainingData",
]
