"""Readers for the on-disk layouts, masks, transforms and synthetic data in the same layouts."""


class DataError(Exception):
    """A data file that cannot be used; the message names the file and the problem."""
