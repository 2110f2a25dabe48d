"""Every metric name and every file name a run writes, defined once.

Metric names are stable and namespaced: loggers, the report, the plots and the tests read them
from here, so a rename happens in one place.
"""

from __future__ import annotations

from pathlib import Path

# --- metrics, as logged (CSV, W&B) -----------------------------------------------------------
TRAIN_CE = "train/ce"  # cross-entropy of the batch, per step
TRAIN_CE_EPOCH = "train/ce_epoch"  # its epoch mean: what the pseudo-task switch compares with T
TRAIN_LOSS = "train/loss"  # what the step back-propagated
TRAIN_PTR_LOSS = "train/ptr_loss"  # f_reg(rep, t), unweighted
TRAIN_REG_LOSS = "train/reg_loss"  # a baseline regularizer's weighted term
PTR_W = "ptr/w"
PTR_G_CE = "ptr/g_ce"
PTR_G_PTR = "ptr/g_ptr"
PTR_ACTIVE = "ptr/active"
PTR_M = "ptr/m"  # the m the targets use (regularizer.m, or x the features' mean)
FEATURE_NORM_SQ = "feature_norm/norm_sq"  # mean_j ||rep_j||^2 (regularizer=feature_norm)
LR = "lr"  # prefix of the learning rates, one per parameter group: lr/backbone, lr/head
VAL_ACC = "val/acc"
VAL_LOSS = "val/loss"
TEST_ACC = "test/acc"
TEST_ACC_1CROP = "test/acc_1crop"
TEST_MEAN_CLASS_ACC = "test/mean_class_acc"
TEST_PREFIX = "test/"
EPOCH = "epoch"  # Lightning's own columns beside the metrics of the CSV logs
STEP = "step"

# --- telemetry: every telemetry.every_n_steps steps, at that step (telemetry.py) -------------
FEAT_MEAN = "feat/mean"  # the feature tensor's mean, std and share of exact zeros
FEAT_STD = "feat/std"
FEAT_ZERO_FRAC = "feat/zero_frac"
PTR_LINEAR_FRAC = "ptr/linear_frac"  # share of |rep - t| > 1: where SML1's gradient saturates
PTR_PULL_FRAC = "ptr/pull_frac"  # ||E_t g||^2 / E_t ||g||^2: the pseudo-task's pull, not noise
GRAD_COHERENCE_CE = "grad/coherence_ce"  # ||mean_j g_j||^2 / mean_j ||g_j||^2 at the features
GRAD_COHERENCE_PTR = "grad/coherence_ptr"
GRAD_SUM_CE = "grad/sum_ce"  # ||sum_j g_j||: the batch-summed gradient at the features
GRAD_SUM_PTR = "grad/sum_ptr"
GRAD_PARAM_CE = "grad/param_ce"  # ||d loss / d theta|| over the backbone's parameters
GRAD_PARAM_PTR = "grad/param_ptr"
GRAD_PARAM_COS = "grad/param_cos"  # their cosine
HEAD_WEIGHT_NORM = "head/weight_norm"
TELEMETRY = frozenset(
    {
        FEAT_MEAN,
        FEAT_STD,
        FEAT_ZERO_FRAC,
        PTR_LINEAR_FRAC,
        PTR_PULL_FRAC,
        GRAD_COHERENCE_CE,
        GRAD_COHERENCE_PTR,
        GRAD_SUM_CE,
        GRAD_SUM_PTR,
        GRAD_PARAM_CE,
        GRAD_PARAM_PTR,
        GRAD_PARAM_COS,
        HEAD_WEIGHT_NORM,
    }
)
VAL_ENTROPY = "val/entropy"  # mean prediction entropy in bits, per validation (with telemetry)
# train/ce of each step around the first switch-on, at its own step (telemetry.switch_window)
TRAIN_CE_AROUND_SWITCH = "train/ce_around_switch"

# --- end-of-run W&B content ------------------------------------------------------------------
TEST_PER_CLASS = "test/per_class"  # table: class, number of test images, accuracy
TEST_CONFUSION = "test/confusion_matrix"
TEST_EXAMPLES = "test/examples"  # a few test images with their top-3 predictions
RUN_FILES_ARTIFACT = "run-files"  # artifact type: metrics.json, split.json, predictions*.npz

# --- files of a run folder ---------------------------------------------------------------------
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.json"
ERROR_FILE = "error.txt"
PREDICTIONS_FILES = {"test": "predictions.npz", "val": "predictions_val.npz"}
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOCK_FILE = ".lock"  # held by the live run (run_folder.hold)
CSV_DIR = "csv"
CSV_METRICS = Path(CSV_DIR) / "metrics.csv"
CSV_BEFORE_RESUME = "metrics.before-resume-*.csv"  # a resumed run's earlier CSV logs (glob)
HYDRA_MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of a sweep, in the sweep folder
HYDRA_DIR = ".hydra"  # Hydra's record of a job: its config, overrides and hydra.yaml
HYDRA_RECORD = "hydra.yaml"
WANDB_DIR = "wandb"  # W&B's own files of a run
PLOTS_DIR = "plots"  # where ptr-plots (and ptr-report --plots) write by default
WANDB_RUN_ID_FILE = "wandb_run_id.txt"  # so resume= continues the same W&B run
# What a run writes into its folder, and what overwrite=true replaces; the first four mean the
# folder holds a run.
RUN_OUTPUTS = (
    CONFIG_FILE,
    METRICS_FILE,
    str(LAST_CHECKPOINT.parent),
    CSV_DIR,
    SPLIT_FILE,
    *PREDICTIONS_FILES.values(),
    WANDB_RUN_ID_FILE,
    ERROR_FILE,
)
RUN_MARKERS = RUN_OUTPUTS[:4]

# --- files of the report command ---------------------------------------------------------------
REPORT_MD = "report.md"
REPORT_CSV = "report.csv"


# --- values of config keys ------------------------------------------------------------------
AUTO_RESUME = "auto"  # resume=auto: continue from this run folder's own checkpoint, if any


# --- methods ---------------------------------------------------------------------------------
FINE_TUNING = "ft"  # plain fine-tuning: the baseline of every comparison
REGRESSION_METHODS = frozenset({"ptr", "fnp"})  # regularizers whose regression loss matters


def method_name(regularizer: str, regression: str | None = None) -> str:
    """A method's short name from its config choices: ``ft`` (``regularizer=none``),
    ``ptr-sml1``, ``fnp-l2``, ``l2sp``, ... (the regression loss only where it matters)."""
    if regularizer == "none":
        return FINE_TUNING
    if regularizer in REGRESSION_METHODS and regression:
        return f"{regularizer}-{regression}"
    return regularizer
