"""gunicorn settings of the API (``gunicorn --config api/gunicorn_conf.py "api.wsgi:create()"``).

The Procfile passes ``--bind`` and ``--workers``; command-line flags override this file.
"""

# Load the app once in the master: resolving the store URL (and starting the embedded server when
# MONGODB_URL is unset) happens once, and errors show before any worker starts. No connection is
# made while loading: each worker creates its own MongoClient on its first request.
preload_app = True
worker_class = "sync"
timeout = 30  # a worker stuck this long is restarted (reads time out far sooner: 503 in ~1 s)
graceful_timeout = 10
keepalive = 5
max_requests = 0
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = "info"
# gunicorn >= 25 opens a control socket at one fixed per-user path ($HOME/.gunicorn/gunicorn.ctl):
# two servers on one machine (tests, benchmarks, a second deployment) would fight over it.
control_socket_disable = True
