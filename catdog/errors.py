"""The exceptions catdog raises; the CLI turns each into one line and exit code 1."""

from __future__ import annotations


class CatdogError(Exception):
    """Base class of every error catdog reports to the user."""


class ConfigError(CatdogError):
    """A config file or override is missing, malformed or out of range."""


class DataError(CatdogError):
    """A data folder is missing, empty or not laid out as class folders."""


class ImageError(CatdogError):
    """One image file cannot be used; the message is the reason."""


class RunError(CatdogError):
    """A run directory is missing or does not hold a trained model."""


class DownloadError(CatdogError):
    """A dataset could not be fetched, verified or extracted."""


class DistributeError(CatdogError):
    """Training cannot be spread as `train.distribute` asks (backend, TF_CONFIG, start-up order)."""
