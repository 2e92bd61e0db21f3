"""The regularizers that live in the training loop, small pieces usable one at a time, ``Trainer`` and its
monitor. The experiments ``augserve train`` runs with them are in ``augserve.experiments``."""

from augserve.trainer.adaptive import AdaptiveStrength, chance_accuracy
from augserve.trainer.decay import elastic_net_penalty, l1_penalty, param_groups
from augserve.trainer.dropout import (DropBlock2d, DropConnectLinear, ResidualWithStochasticDepth,
                                      mc_dropout_predict, set_dropout, stochastic_depth_rates)
from augserve.trainer.early_stopping import EarlyStopping
from augserve.trainer.losses import SoftTargetCrossEntropy
from augserve.trainer.monitor import EpochRecord, History, plot_learning_curves
from augserve.trainer.pruning import (iterative_magnitude_pruning, make_permanent, prune_global, prune_layers,
                                      sparsity_report)
from augserve.trainer.schedule import linear_scaling_lr, warmup_cosine, warmup_cosine_scheduler
from augserve.trainer.trainer import Trainer, load_checkpoint

__all__ = ["AdaptiveStrength", "DropBlock2d", "DropConnectLinear", "EarlyStopping", "EpochRecord", "History",
           "ResidualWithStochasticDepth", "SoftTargetCrossEntropy", "Trainer", "chance_accuracy",
           "elastic_net_penalty", "iterative_magnitude_pruning", "l1_penalty", "linear_scaling_lr", "load_checkpoint",
           "make_permanent", "mc_dropout_predict", "param_groups", "plot_learning_curves", "prune_global",
           "prune_layers", "set_dropout", "sparsity_report", "stochastic_depth_rates", "warmup_cosine",
           "warmup_cosine_scheduler"]
