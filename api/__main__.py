"""Development server: ``python -m api [--host 127.0.0.1] [--port 8080] [--workers 2]``.

Runs the same app as the Procfile (gunicorn with api/gunicorn_conf.py) in the foreground;
``--server wsgiref`` uses Python's single-threaded reference server instead (no fork).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CONF = Path(__file__).with_name("gunicorn_conf.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--server", choices=("gunicorn", "wsgiref"), default="gunicorn")
    args = parser.parse_args(argv)

    from api.wsgi import create

    if args.server == "wsgiref":
        import bottle

        bottle.run(create(), host=args.host, port=args.port, server="wsgiref", quiet=False)
        return 0

    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = [
        "gunicorn",
        "--config",
        str(CONF),
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(args.workers),
        "api.wsgi:create()",
    ]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
