"""Weights & Biases: the logger, the run's identity (name, group, job type, tags), the
end-of-run tables and files, and a saved workspace."""
