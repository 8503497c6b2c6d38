"""The base class of every /api/v1 DRF view."""

from rest_framework import exceptions
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication

_instances: dict[tuple, list] = {}


def _shared(classes) -> list:
    """One instance of each class in ``classes``, built once per process: DRF builds a fresh
    parser, authenticator, renderer, throttle and permission object on every request, and
    ours keep no per-request state (they may serve several threads at once)."""
    key = tuple(classes)
    found = _instances.get(key)
    if found is None:
        found = _instances[key] = [cls() for cls in key]
    return found


class ApiView(APIView):
    """Runs throttles before permissions, so a bad or missing key is still counted.

    DRF's order (authenticate → permissions → throttles) would let unauthenticated and
    forbidden requests bypass the limits and leave them without rate-limit headers.
    """

    # ApiKeyAuthentication accepts a cached key provisionally; ``initial`` confirms it after
    # the throttle, which reads the key generation in its own round trip.
    confirms_keys_after_throttle = True

    def get_parsers(self):
        return _shared(self.parser_classes)

    def get_authenticators(self):
        return _shared(self.authentication_classes)

    def get_renderers(self):
        return _shared(self.renderer_classes)

    def get_throttles(self):
        return _shared(self.throttle_classes)

    def get_permissions(self):
        return _shared(self.permission_classes)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # As DRF's ``allowed_methods`` on an instance, where Django's ``View.setup`` has made a
        # ``head`` of any ``get``.
        methods = [m for m in cls.http_method_names if hasattr(cls, m) or (m == "head" and hasattr(cls, "get"))]
        cls._allow = ", ".join(method.upper() for method in methods)

    @property
    def default_response_headers(self):
        """DRF's ``Allow`` (and ``Vary``), which it rebuilds with a hasattr per HTTP method on every
        request (~1 % of an event request's instructions, callgrind); fixed per class here."""
        headers = {"Allow": self._allow}
        if len(self.renderer_classes) > 1:
            headers["Vary"] = "Accept"
        return headers

    def json_body(self, request):
        """``request.data``, with the view's JSON parser called directly for the usual body (JSON,
        a length, not read yet), its errors included; anything else takes DRF's ``request.data``
        (415, empty bodies). That parser is the one DRF's negotiation picks for
        ``application/json`` (no view here has a wildcard parser before it). Skipping the
        negotiation and stream plumbing: -53k of 1.37M instructions per event request (callgrind)."""
        django_request = request._request
        length = django_request.META.get("CONTENT_LENGTH", "")
        usual = django_request.content_type == "application/json" and length.isdigit() and int(length) > 0
        if usual and not django_request._read_started:
            for parser in self.get_parsers():
                if parser.media_type == "application/json":
                    return parser.parse(django_request, django_request.content_type, request.parser_context)
        return request.data

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
