"""Comparisons of masking strategies: arms x seeds, statistics, reports and plots."""
