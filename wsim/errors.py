"""The one exception users see for bad input (docs/design.md: config objects raise it naming the field)."""


class ConfigError(ValueError):
    """Bad input: names the field, the bad value and what is allowed. The CLI exits 2 on it."""


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``: input checks, never ``assert``."""
    if not condition:
        raise ConfigError(message)


def positive(name: str, value, *, integer: bool = False) -> None:
    """Check that field ``name`` is a positive number (an int when ``integer``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    if integer:
        ok = isinstance(value, int) and value > 0
    else:
        ok = isinstance(value, (int, float)) and value == value and 0 < value < float("inf")
    if not ok:
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


def non_negative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
