from rest_framework import permissions


def HasScope(scope):
    """Permission class factory: the request's API key must carry ``scope``. Without a key,
    DRF answers 401 rather than 403."""

    class _HasScope(permissions.BasePermission):
        message = f"This API key lacks the '{scope}' scope"

        def has_permission(self, request, view):
            return request.auth is not None and request.auth.has_scope(scope)

    _HasScope.__name__ = f"HasScope({scope})"
    _HasScope.scope = scope
    return _HasScope
