"""Errors Tollgate raises on purpose. Each message says what is wrong and what to fix."""


class TollgateError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(TollgateError):
    """The configuration is invalid."""


class DataError(TollgateError):
    """The input data cannot be used for training."""


class RegistryError(TollgateError):
    """The model registry is missing something or refused an operation."""

