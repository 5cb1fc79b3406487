"""Checks of a family config's fields and readers of config.json's, shared by every family (plain
``ValueError`` naming the class and field: ``models`` never imports ``wsim``). ``models.decoder``
re-exports them.
"""

from __future__ import annotations

import math

from models.mlp import ACTIVATIONS


def positive_int(cls: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{cls}.{name} must be a positive integer, got {value!r}")


def positive_float(cls: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{cls}.{name} must be a positive number, got {value!r}")


def boolean(cls: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{cls}.{name} must be a bool, got {value!r}")


def modelled_activation(cls: str, name: str, value) -> None:
    """transformers takes any of its ACT2FN names; the ones ``activation`` computes are modelled."""
    if value not in ACTIVATIONS:
        raise ValueError(f"{cls}.{name} {value!r} is not supported: transformers' {value} is not "
                         f"modelled (supported: {', '.join(ACTIVATIONS)})")


def token_id(cls: str, name: str, value, vocab: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
        raise ValueError(f"{cls}.{name} must be a token id in [0, {vocab}), got {value!r}")


def require_keys(d: dict, keys: tuple[str, ...], model_type: str) -> None:
    """Refuse a config.json that lacks a field with no sensible default (the model's dimensions)."""
    missing = [k for k in keys if d.get(k) is None]
    if missing:
        raise ValueError(f"config lacks the {model_type} key {missing[0]!r}"
                         + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else ""))


def given(d: dict, key: str, default):
    """``d[key]``, or ``default`` when absent or null (configs write ``"bos_token_id": null``)."""
    value = d.get(key)
    return default if value is None else value


def eos_ids(value):
    """config.json's ``eos_token_id``: one id, or a list of ids (Llama 3 instruct ends on either of
    two): kept as an int or a tuple, whose first id pads finished rows (as transformers does)."""
    if isinstance(value, list):
        return tuple(value) if len(value) != 1 else value[0]
    return value


def check_eos(cls: str, value, vocab: int) -> None:
    for v in value if isinstance(value, tuple) and value else (value,):
        token_id(cls, "eos_token_id", v, vocab)


def eos_json(value):
    return list(value) if isinstance(value, tuple) else value


def check_fields(cls: str, obj, ints: tuple = (), floats: tuple = (), bools: tuple = ()) -> None:
    for name in ints:
        positive_int(cls, name, getattr(obj, name))
    for name in floats:
        positive_float(cls, name, getattr(obj, name))
    for name in bools:
        boolean(cls, name, getattr(obj, name))
