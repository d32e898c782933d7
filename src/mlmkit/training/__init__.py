"""mlmkit.training."""
