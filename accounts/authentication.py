from rest_framework import authentication, exceptions

from .keys import touch_last_used, verify_key

INVALID_KEY_MESSAGE = "Invalid or missing API key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` → (None, ApiKey). Only the header is accepted."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        api_key = verify_key(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        touch_last_used(api_key)
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword
