"""A JSON parser that turns every kind of hostile input into a 400 or 413, never a 500.

DRF's stock parser lets RecursionError (``[[[[…``), ``1e999999`` and lone surrogates
through as server errors, and PostgreSQL rejects ``\\u0000`` at INSERT time. We read a
bounded body, parse strictly, and walk the result once.
"""

import json
import re

from django.conf import settings
from rest_framework import exceptions, parsers

MAX_DEPTH = 32


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "Request body is too large"
    default_code = "payload_too_large"


class InvalidJSON(exceptions.ParseError):
    default_code = "invalid_json"


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _check(value, depth=0):
    """Strings without NUL or lone surrogates, and at most MAX_DEPTH levels of objects and
    arrays (the body itself is the first; a scalar adds none). ``depth``: containers around ``value``."""
    if isinstance(value, str):
        _check_string(value)
        return
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_string(key)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def _check_depth(value, depth=0):
    """``_check`` for text without ``\\u`` escapes: only the nesting can be wrong."""
    if depth >= MAX_DEPTH:  # value is a container (only containers are visited)
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    # json.loads makes exact dicts and lists, so ``type() is`` is exact here, and cheaper than
    # isinstance over the thousands of values of a full batch.
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return
    for item in value:
        kind = type(item)
        if kind is dict or kind is list:
            _check_depth(item, depth + 1)


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL: never part of a name or a tag


def _check_string(text):
    if "\x00" in text:
        raise ValueError("strings must not contain \\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("strings must not contain lone surrogates") from None


def read_body(stream, limit):
    """Read at most ``limit`` bytes; raise PayloadTooLarge beyond it."""
    if stream is None:
        return b""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    return data


def loads_strict(data: bytes):
    """Parse JSON bytes; any defect raises ValueError with a human message."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of more than 4300 digits: Python's message names sys internals
        if "digits" in str(exc):
            raise ValueError("a number has too many digits") from None
        raise
    # A NUL or a lone surrogate can only come from a \\u escape: raw control characters are
    # invalid JSON and the UTF-8 decode above rejects encoded surrogates. Without escapes
    # (most bodies) only the depth is left to check, over containers alone.
    if "\\u" in text:
        _check(value)
    else:
        _check_depth(value)
    return value


class StrictJSONParser(parsers.BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        view, request = context.get("view"), context.get("request")
        encoding = request.META.get("HTTP_CONTENT_ENCODING", "") if request is not None else ""
        if encoding and encoding.lower() != "identity":  # a gzip body read as "not valid UTF-8"
            raise exceptions.UnsupportedMediaType(
                media_type, detail=f"Content-Encoding {encoding[:20]} is not supported: send the body uncompressed"
            )
        limit = getattr(view, "max_body_bytes", None) or settings.MAX_BODY_BYTES
        data = read_body(stream, limit)
        if not data.strip():
            raise InvalidJSON("Request body must be a JSON object")
        try:
            return loads_strict(data)
        except ValueError as exc:
            raise InvalidJSON(f"Malformed JSON: {exc}") from None
