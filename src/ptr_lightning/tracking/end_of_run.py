"""What a run shows on W&B beyond its scalars, logged once the run's files are written.

- ``test/per_class``: a table of class name, number of test images and accuracy;
- ``test/confusion_matrix``: torchmetrics' confusion matrix as W&B's confusion-matrix chart;
- ``test/examples``: a few test images (the misclassified first) with their top-3 predictions;
- an artifact of type ``run-files``: ``metrics.json``, ``split.json``, ``predictions*.npz``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ptr_lightning.core import names
from ptr_lightning.model.prediction_metrics import confusion_matrix, per_class_accuracy
from ptr_lightning.tracking.wandb_logger import wandb_loggers

log = logging.getLogger(__name__)

N_EXAMPLES = 12  # test images shown with their predictions
TOP_K = 3


def publish_to_wandb(
    loggers: list[Any], out: Path, predictions: dict[str, dict[str, np.ndarray]], test_images: Any
) -> None:
    """The end-of-run tables, images and files on W&B; a W&B failure never fails the run."""
    for logger in wandb_loggers(loggers):
        try:
            publish_run(logger, out, predictions.get("test"), test_images)
        except Exception as err:
            log.warning("W&B: the end-of-run tables and files were not logged (%s)", err)


def publish_run(
    logger: Any, out: Path, test: dict[str, np.ndarray] | None, test_images: Any
) -> None:
    """Log the end-of-run tables, images and files of run folder ``out`` to a WandbLogger.

    ``test`` holds the test set's predictions as ``predictions.npz`` does; ``test_images`` is
    the test set (items ``(uint8 image (3, H, W), label)``) in their order.
    """
    import wandb

    run = logger.experiment
    if test is not None:
        probabilities, labels = test["probabilities"], test["labels"]
        class_names = [str(c) for c in test["class_names"]]
        run.log(
            {
                names.TEST_PER_CLASS: per_class_table(probabilities, labels, class_names),
                names.TEST_CONFUSION: confusion_chart(probabilities, labels, class_names),
                names.TEST_EXAMPLES: examples(probabilities, labels, class_names, test_images),
            }
        )
    files = [out / names.METRICS_FILE, out / names.SPLIT_FILE]
    files += [out / name for name in names.PREDICTIONS_FILES.values()]
    artifact = wandb.Artifact(f"{names.RUN_FILES_ARTIFACT}-{run.id}", names.RUN_FILES_ARTIFACT)
    for path in files:
        if path.is_file():
            artifact.add_file(str(path))
    run.log_artifact(artifact)


def per_class_table(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Any:
    import wandb

    counts, accuracy = per_class_accuracy(probabilities, labels)
    rows = [
        [name, int(n), None if np.isnan(acc) else float(acc)]
        for name, n, acc in zip(class_names, counts, accuracy, strict=True)
    ]
    return wandb.Table(columns=["class", "test images", "accuracy"], data=rows)


def confusion_chart(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Any:
    """W&B's confusion-matrix chart (its own table layout), counts from torchmetrics."""
    import wandb

    matrix = confusion_matrix(probabilities, labels)
    rows = [
        [class_names[true], class_names[pred], int(matrix[true, pred])]
        for true in range(len(class_names))
        for pred in range(len(class_names))
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    fields = {key: key for key in table.columns}
    return wandb.plot_table("wandb/confusion_matrix/v1", table, fields, {"title": "test"})


def examples(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], test_images: Any
) -> list[Any]:
    """Up to ``N_EXAMPLES`` test images, the misclassified first, captioned with the true class
    and the top-3 predicted classes with their probabilities."""
    import wandb

    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    right = np.flatnonzero(probabilities.argmax(axis=1) == labels)
    chosen = [*wrong[: N_EXAMPLES // 2], *right][:N_EXAMPLES]
    images = []
    for i in sorted(chosen):
        top = np.argsort(-probabilities[i])[:TOP_K]
        guesses = ", ".join(f"{class_names[k]} {probabilities[i, k]:.2f}" for k in top)
        image = test_images[i][0].permute(1, 2, 0).numpy()
        images.append(wandb.Image(image, caption=f"true {class_names[labels[i]]} | {guesses}"))
    return images
