"""Helpers shared by the test packages (one of each kind)."""
