"""Errors Tollgate raises on purpose. Each message says what is wrong and what to fix."""


class TollgateError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(TollgateError):
    """The configuration is invalid."""


class DataError(TollgateError):
    """The input data cannot be used for training."""


class RegistryError(TollgateError):
    """The model registry is missing something or refused an operation."""


class RegistryIntegrityError(RegistryError):
    """A registry file does not match the sha256/size its version's manifest recorded (tampered or damaged)."""


class RegistryCorruptError(RegistryError):
    """A registry file cannot be parsed (truncated, wrong type, random bytes)."""


class ChampionChangedError(RegistryError):
    """``production`` moved between reading it and writing it; nothing was changed.

    ``expected`` and ``actual`` are version numbers (None: no production alias).
    """

    def __init__(self, message: str, expected: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual
