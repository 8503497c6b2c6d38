import io
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infinity.settings")


class ChunkedBodies:
    """Gives a chunked request body (``Transfer-Encoding: chunked``, no ``Content-Length``) its
    length. Django reads only ``Content-Length`` bytes, so such a body read as empty and a valid
    event got "Event name is required". The server has de-chunked ``wsgi.input`` already; at most
    ``limit`` + 1 bytes are read, so a longer body still meets its endpoint's 413."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    def __call__(self, environ, start_response):
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _application():
    django_app = get_wsgi_application()
    from events.batch import MAX_BATCH_BODY_BYTES  # the largest body any endpoint takes

    return ChunkedBodies(django_app, MAX_BATCH_BODY_BYTES)


application = _application()
