"""mlmkit.modeling."""
