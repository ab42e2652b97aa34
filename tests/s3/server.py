"""An S3-compatible server for karat's S3 tests: moto's S3 (PyPI `moto[server]`) on 127.0.0.1.

    python3 tests/s3/server.py PORT [--ignore-conditional-writes]

moto honours conditional writes (`If-None-Match: *`, `If-Match`) like AWS S3. With
`--ignore-conditional-writes` the headers are dropped before moto sees them, which is how some
S3-compatible servers behave (they accept the header and overwrite anyway): karat must refuse
to write to such a store.
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")


def ignoring_conditional_writes(app):
    def wrapped(environ, start_response):
        if environ.get("REQUEST_METHOD") == "PUT":
            for header in CONDITIONAL_HEADERS:
                environ.pop(header, None)
        return app(environ, start_response)

    return wrapped


def main():
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    if "--ignore-conditional-writes" in sys.argv[2:]:
        app = ignoring_conditional_writes(app)
    run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    main()
