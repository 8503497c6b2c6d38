"""Input shapes of the Events API. Only these read ``request.data``.

Limits (documented in the README): event name ≤ 200 characters; visitor_id ≤ 200;
metadata ≤ 30 keys, key 1–100 characters, string value ≤ 1000 characters, scalar values
only; timestamp no more than 1 hour in the future; price 0…10^12 minor units; quantity
1…1,000,000; product name ≤ 200 characters.
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from .currencies import ISO_4217
from .parsers import CONTROL_CHARACTERS

MAX_NAME = 200
MAX_VISITOR_ID = 200
MAX_METADATA_KEYS = 30
MAX_METADATA_KEY = 100
MAX_METADATA_VALUE = 1000
MAX_SAFE_INT = 2**53
MAX_FUTURE = timedelta(hours=1)
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PRICE = 10**12
MAX_QUANTITY = 1_000_000

fail = serializers.ValidationError


class _PlainField(serializers.Field):
    """A field whose ``to_internal_value`` does all its checks, so it takes no validators: a
    present, non-null value goes straight to it, past DRF's empty-value handling and validator
    loop; the batch endpoint validates up to 500 bodies a request through these fields."""

    def __init__(self, **kwargs):
        if kwargs.get("validators"):
            raise TypeError(f"{type(self).__name__} checks its value in to_internal_value and takes no validators")
        super().__init__(**kwargs)

    def run_validation(self, data=empty):
        if data is empty or data is None or self.read_only:
            return super().run_validation(data)
        return self.to_internal_value(data)

    def get_value(self, dictionary):
        # A parsed JSON object: DRF's form-data handling does not apply.
        if type(dictionary) is dict:
            return dictionary.get(self.field_name, empty)
        return super().get_value(dictionary)


class _NullMeansAbsent:
    """JSON null for an optional field is the same as leaving the field out (DRF answered
    "This field may not be null.", naming no field)."""

    def validate_empty_values(self, data):
        if data is None and not self.required:
            return True, self.get_default()
        return super().validate_empty_values(data)


@extend_schema_field(OpenApiTypes.INT64)
class StrictIntegerField(_NullMeansAbsent, _PlainField):
    """A JSON integer (not a float, string or boolean) within bounds."""

    def __init__(self, *, label, min_value, max_value, hint="", **kwargs):
        self.bounds = (min_value, max_value)
        self.hint = hint
        super().__init__(label=label, **kwargs)

    def to_internal_value(self, data):
        low, high = self.bounds
        if isinstance(data, bool) or not isinstance(data, int):
            raise fail(f"{self.label} must be an integer{self.hint}")
        if not low <= data <= high:
            raise fail(f"{self.label} must be between {low} and {high}")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(OpenApiTypes.STR)
class NameField(_PlainField):
    """A non-empty string of at most ``max_length`` characters, stripped; with ``single_line``
    (names), no control characters: a name is a label, and U+001F in an event name would be
    taken for the separator of the ``event_name|metadata.<key>`` rollups."""

    def __init__(self, *, label, max_length, single_line=True, **kwargs):
        self.max_length = max_length
        self.single_line = single_line
        kwargs.setdefault("error_messages", {"required": f"{label} is required", "null": f"{label} is required"})
        super().__init__(label=label, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise fail(f"{self.label} must be a string")
        text = data.strip()
        if not text:
            raise fail(f"{self.label} is required" if self.required else f"{self.label} must not be empty")
        if len(text) > self.max_length:
            raise fail(f"{self.label} must be at most {self.max_length} characters")
        if self.single_line and CONTROL_CHARACTERS.search(text):
            raise fail(f"{self.label} must not contain control characters (tab, line break, U+0000-U+001F, U+007F)")
        return text

    def to_representation(self, value):
        return value


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": MAX_VISITOR_ID}, {"type": "integer"}]})
class VisitorIdField(NameField):
    """A string or an integer (a customer's own user id), kept as text."""

    def __init__(self, **kwargs):
        super().__init__(label="visitor_id", max_length=MAX_VISITOR_ID, single_line=False, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        elif not isinstance(data, str):
            raise fail("visitor_id must be a string or an integer")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(_PlainField):
    """ISO 8601 date-time; naive means UTC; at most an hour ahead of the server clock."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise fail("timestamp must be an ISO 8601 date-time string, e.g. 2024-01-15T10:30:00Z")
        text = data.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            if "T" not in text.upper() and " " not in text:
                raise ValueError
            value = datetime.fromisoformat(text)
        except ValueError:
            raise fail("timestamp must be an ISO 8601 date-time string, e.g. 2024-01-15T10:30:00Z") from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise fail("timestamp is out of range") from None
        now = self.context.get("now") or timezone.now()
        if value > now + MAX_FUTURE:
            raise fail("timestamp must not be more than 1 hour in the future")
        if value < MIN_TIMESTAMP:
            raise fail("timestamp must not be before 1970-01-01")
        return value

    def to_representation(self, value):
        return value.isoformat()


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_METADATA_KEYS,
        "additionalProperties": {
            "oneOf": [{"type": "string", "maxLength": MAX_METADATA_VALUE}, {"type": "number"}, {"type": "boolean"}],
            "nullable": True,
        },
    }
)
class MetadataField(_NullMeansAbsent, _PlainField):
    """A flat JSON object of scalar values (string, number, boolean, null)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise fail("metadata must be a JSON object")
        if len(data) > MAX_METADATA_KEYS:
            raise fail(f"metadata must have at most {MAX_METADATA_KEYS} keys")
        for key, value in data.items():
            if not key or len(key) > MAX_METADATA_KEY:
                raise fail(f"metadata keys must be 1 to {MAX_METADATA_KEY} characters")
            if isinstance(value, str):
                if len(value) > MAX_METADATA_VALUE:
                    raise fail(f"metadata.{key} must be at most {MAX_METADATA_VALUE} characters")
            elif isinstance(value, bool) or value is None or isinstance(value, float):
                pass
            elif isinstance(value, int):
                if abs(value) > MAX_SAFE_INT:
                    raise fail(f"metadata.{key} is out of range (integers up to 2^53)")
            else:
                raise fail(f"metadata.{key} must be a string, number, boolean or null (metadata is flat)")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "USD"})
class CurrencyField(_PlainField):
    def to_internal_value(self, data):
        code = data.strip().upper() if isinstance(data, str) else None
        if code not in ISO_4217:
            raise fail("currency must be an ISO 4217 code, e.g. USD")
        return code

    def to_representation(self, value):
        return value


class _CommonIn(serializers.Serializer):
    metadata = MetadataField(required=False, default=dict)
    visitor_id = VisitorIdField(required=False, allow_null=True, default=None)
    timestamp = TimestampField(required=False, allow_null=True, default=None)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise fail({"non_field_errors": ["Request body must be a JSON object"]})
        return super().to_internal_value(data)

    def run_validators(self, value):
        # No body-level validators and no read-only fields: DRF's merge of read-only defaults
        # into each body before an empty loop would only cost time.
        if self.validators:
            super().run_validators(value)


class EventIn(_CommonIn):
    event_name = NameField(label="Event name", max_length=MAX_NAME)


class PurchaseIn(_CommonIn):
    price = StrictIntegerField(
        label="price",
        min_value=0,
        max_value=MAX_PRICE,
        hint=" in minor units, e.g. 2999 for 29.99",
        error_messages={"required": "price is required", "null": "price is required"},
    )
    currency = CurrencyField(error_messages={"required": "currency is required", "null": "currency is required"})
    product_name = NameField(label="product_name", max_length=MAX_NAME)
    quantity = StrictIntegerField(label="quantity", min_value=1, max_value=MAX_QUANTITY, required=False, default=1)


MAX_BATCH_ITEMS = 500


@extend_schema_field(
    {
        "type": "object",
        "description": "A custom event (the body of POST /events), or a purchase (the body of POST /events/purchase) "
        'with `"type": "purchase"`. `type` defaults to `"event"`.',
        "properties": {
            "type": {"type": "string", "enum": ["event", "purchase"], "default": "event"},
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Optional, as the Idempotency-Key header of POST /events: 1-200 printable ASCII "
                "characters; an item with a key this site used within 24 hours stores nothing",
            },
        },
        "additionalProperties": True,
    }
)
class BatchItemField(serializers.Field):
    """Kept raw: each item is validated on its own by EventIn or PurchaseIn (per-item results)."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class BatchIn(serializers.Serializer):
    """``{"events": [item, …]}`` with 1…500 items; see BatchItemField."""

    events = serializers.ListField(
        child=BatchItemField(allow_null=True),  # a null item is an item error, like any other non-object
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        error_messages={
            "required": "events is required",
            "null": "events is required",
            "not_a_list": "events must be a list of events",
            "min_length": "events must contain at least 1 event",
            "max_length": f"events must contain at most {MAX_BATCH_ITEMS} events",
        },
    )

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise fail({"non_field_errors": ["Request body must be a JSON object"]})
        return super().to_internal_value(data)
