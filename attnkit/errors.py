"""Errors raised by attnkit. Every error derives from :class:`AttnkitError` so the CLI can
print it as one line; each message names the argument (or key path, file and line), what was
expected and what was found."""


class AttnkitError(Exception):
    """Base class of every error attnkit raises on purpose."""


class ConfigError(AttnkitError, ValueError):
    """A configuration value (YAML key, spec field, CLI option) is invalid."""


class ShapeError(AttnkitError, ValueError):
    """A tensor argument has the wrong rank, size, dtype or device."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class BackendError(AttnkitError, RuntimeError):
    """A forced attention backend cannot run the requested attention."""


class DataError(AttnkitError, ValueError):
    """A data file is missing or malformed."""


class WriteError(AttnkitError, OSError):
    """A file could not be written (disk full, no permission); what was there is unchanged."""


class DeployError(AttnkitError, RuntimeError):
    """A run cannot be exported, compressed or run on the engine asked for."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
