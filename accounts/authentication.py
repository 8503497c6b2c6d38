from rest_framework import authentication, exceptions

from .keys import key_cache, touch_last_used, verify_key

INVALID_KEY_MESSAGE = "Invalid or missing API key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` → (None, ApiKey). Only the header is accepted.

    A view whose throttle ``confirms_keys`` gets this worker's cached copy of the key, which
    the throttle confirms against the key generation in the round trip it makes anyway;
    any other view gets a key confirmed here (``KeyCache.lookup``).
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        view = (request.parser_context or {}).get("view")
        if any(getattr(throttle, "confirms_keys", False) for throttle in getattr(view, "throttle_classes", ())):
            api_key = key_cache.cached(parts[1])  # the view's throttle confirms it (``KeyCache.confirm``)
        else:
            api_key = verify_key(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        touch_last_used(api_key)
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword
