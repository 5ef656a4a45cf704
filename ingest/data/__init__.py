"""Packaged data files (default partner groups), read through importlib.resources."""
