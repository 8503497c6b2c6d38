from rest_framework import authentication, exceptions

from .keys import confirm_key, generation_key, key_generation, lookup_key, touch_last_used

INVALID_KEY_MESSAGE = "Invalid or missing API key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` → (None, ApiKey). Only the header is accepted.

    A key this worker has cached is accepted provisionally; ``confirm`` (called by
    ``ApiView`` after the rate limit) checks it against the shared key generation, which the
    rate limiter reads in its own round trip: a cached key costs no query and no extra trip.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        api_key, seen = lookup_key(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        django_request = request._request
        django_request.key_to_confirm = (parts[1], api_key, seen)
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if not getattr(view, "confirms_keys_after_throttle", False):
            return (None, self.confirm(request))  # no ApiView to confirm it later: now
        django_request.shared_read = generation_key()  # the rate limiter reads it for us
        return (None, api_key)

    @staticmethod
    def confirm(request):
        """The provisionally accepted key, confirmed against the current key generation
        (AuthenticationFailed if it was revoked or deleted meanwhile), its use recorded;
        None when there was nothing to confirm."""
        django_request = request._request
        pending = getattr(django_request, "key_to_confirm", None)
        if pending is None:
            return None
        del django_request.key_to_confirm
        raw, api_key, seen = pending
        if hasattr(django_request, "shared_value"):
            current = django_request.shared_value  # read by the rate limiter (None: store down)
        else:
            current = key_generation()  # no rate limiter ran
        confirmed = confirm_key(raw, api_key, seen, current)
        if confirmed is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        touch_last_used(confirmed)
        return confirmed

    def authenticate_header(self, request):
        return self.keyword
