"""User-facing errors: the CLI prints them as one line and exits 2 (no traceback without --debug)."""


class MedrlError(Exception):
    """Bad input from the user (config, data file, model path): a clear one-line message."""


class ConfigError(MedrlError):
    """A recipe or override is malformed: names the key and what was expected."""


class DataError(MedrlError):
    """A data file or record is unreadable: names the file, row and field."""
