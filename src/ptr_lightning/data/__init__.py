"""Data sets: archive readers, image decoding and data modules."""
