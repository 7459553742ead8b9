"""Run medallion 3.0.0 (memory backend) as another organisation's TAXII server.

Started as its own process by tests (medallion's auth hook is process-global, and the exchange
under test replaces it). Usage: medallion_peer.py CONFIG.json PORT RECORD_DIR. Every POST body
is also written to RECORD_DIR (post-0001.json, ...) so tests can check signatures that
medallion's memory backend itself does not keep.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from medallion import application_instance, register_blueprints, set_config
from werkzeug.serving import make_server


def main() -> None:
    config_path, port, record_dir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    configuration = json.loads(Path(config_path).read_text())
    for prop in ("users", "taxii", "backend"):
        set_config(application_instance, prop, configuration)
    register_blueprints(application_instance)
    inner = application_instance.wsgi_app
    # A restarted peer keeps numbering after the bodies an earlier run recorded.
    done = [int(p.stem.split("-")[1]) for p in record_dir.glob("post-*.json")]
    counter = itertools.count(max(done, default=0) + 1)

    def recording(environ, start_response):  # type: ignore[no-untyped-def]
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            (record_dir / f"post-{next(counter):04d}.json").write_bytes(body)
            import io

            environ["wsgi.input"] = io.BytesIO(body)
        return inner(environ, start_response)

    application_instance.wsgi_app = recording
    server = make_server("127.0.0.1", port, application_instance, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
