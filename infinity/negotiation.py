"""Content negotiation for the JSON API (its own module: DRF imports it while loading views)."""

from rest_framework.negotiation import DefaultContentNegotiation


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """A view with one renderer (every /api/v1 endpoint: JSON) answers with it whatever the
    ``Accept`` header says, without parsing it on every request; others negotiate as usual."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
