"""Stage 2: train cross-modal students against a feature cache."""
