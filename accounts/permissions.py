from rest_framework import exceptions, permissions

from accounts.authentication import INVALID_KEY_MESSAGE


def HasScope(scope):
    """Permission class factory: the request's API key must carry ``scope``."""

    class _HasScope(permissions.BasePermission):
        message = f"This API key lacks the '{scope}' scope"

        def has_permission(self, request, view):
            if request.auth is None:
                raise exceptions.NotAuthenticated(INVALID_KEY_MESSAGE)
            return request.auth.has_scope(scope)

    _HasScope.__name__ = f"HasScope({scope})"
    _HasScope.scope = scope
    return _HasScope
