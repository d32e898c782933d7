"""mlmkit.data."""
