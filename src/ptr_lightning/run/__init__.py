"""A run's lifecycle: assembly from the config, training and testing, resume, checkpoints,
signals, the run folder's lock, and the command line's console and Hydra setup."""
