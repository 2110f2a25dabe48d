"""The model side of a run: the LightningModule, backbones and their weights, the optimizer
settings, learning-rate schedules, telemetry, the non-finite check and prediction metrics."""
