"""Stage 1: run frozen teachers once over a dataset and write a feature cache."""
