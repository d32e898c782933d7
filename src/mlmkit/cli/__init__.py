"""Typer command-line interface."""
