"""gunicorn settings of the API (``gunicorn --config api/gunicorn_conf.py "api.wsgi:create()"``).

The Procfile passes ``--bind`` and ``--workers``; command-line flags override this file.
"""

import os
import tempfile
from pathlib import Path

# Load the app once in the master: resolving the store URL (and starting the embedded server when
# MONGODB_URL is unset) happens once, and errors show before any worker starts. No connection is
# made while loading: each worker creates its own MongoClient on its first request.
preload_app = True
# gunicorn's sync worker, answering a request too large to read (an exclude= of thousands of ids)
# with the API's JSON 400 instead of an HTML page
worker_class = "api.http.worker.JsonErrorWorker"
timeout = 30  # a worker stuck this long is restarted (reads time out far sooner: 503 in ~1 s)
graceful_timeout = 10
keepalive = 5
max_requests = 0
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = "info"
# Metrics of every worker in one scrape (prometheus-client's multiprocess mode, see api.http.prometheus):
# the folder must be known before the app, and so prometheus_client, is loaded.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="movietime-metrics-")


def on_starting(server):
    """A new server: no worker of an earlier one may be counted (prometheus-client's advice)."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker):
    """A worker's live gauges leave with it (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# gunicorn >= 25 opens a control socket at one fixed per-user path ($HOME/.gunicorn/gunicorn.ctl):
# two servers on one machine (tests, benchmarks, a second deployment) would fight over it.
control_socket_disable = True
