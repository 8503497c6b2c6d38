"""Content negotiation for the JSON API (its own module: DRF imports it while loading views)."""

from rest_framework.negotiation import DefaultContentNegotiation


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """A view with one renderer (every /api/v1 endpoint: JSON) answers with it whatever the
    ``Accept`` header says, without parsing it on every request; a view with one parser takes
    a body sent as exactly its media type without parsing the ``Content-Type`` header. Anything
    else negotiates as usual (a 415 for a type no parser takes)."""

    def select_parser(self, request, parsers):
        if len(parsers) == 1 and request.content_type == parsers[0].media_type:
            return parsers[0]
        return super().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
