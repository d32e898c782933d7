"""mlmkit.inference."""
