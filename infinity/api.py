"""The base class of every /api/v1 DRF view."""

from rest_framework import exceptions
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication


class ApiView(APIView):
    """Runs throttles before permissions, so a bad or missing key is still counted.

    DRF's order (authenticate → permissions → throttles) would let unauthenticated and
    forbidden requests bypass the limits and leave them without rate-limit headers.
    """

    # ApiKeyAuthentication accepts a cached key provisionally; ``initial`` confirms it after
    # the throttle, which reads the key generation in its own round trip.
    confirms_keys_after_throttle = True

    def initial(self, request, *args, **kwargs):
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        request.version, request.versioning_scheme = None, None
        auth_error = None
        try:
            self.perform_authentication(request)
        except exceptions.AuthenticationFailed as exc:
            auth_error = exc
        self.check_throttles(request)
        if auth_error is not None:
            raise auth_error
        confirmed = ApiKeyAuthentication.confirm(request)
        if confirmed is not None and confirmed is not request.auth:
            request.auth = confirmed  # the cached copy was stale: the database's
        self.check_permissions(request)
