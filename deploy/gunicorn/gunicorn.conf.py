"""gunicorn settings for the jaxmba API (`jaxmba-service gunicorn_run` uses the same values).

gunicorn -c /etc/jaxmba/gunicorn.conf.py controlsvc.wsgi:app
"""

bind = "127.0.0.1:5000"
workers = 2
# Threads, not sync workers: every open Server-Sent Events stream holds one thread.
worker_class = "gthread"
threads = 64
# Workers streaming SSE are busy, not stuck; the heartbeat keeps them talking.
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"
proc_name = "jaxmba-api"
limit_request_line = 8190
forwarded_allow_ips = "127.0.0.1"


def on_starting(server):
    """Multiprocess metrics: the workers and the bridge share one directory."""
    from controlsvc import metrics
    from controlsvc.config.settings import load_settings

    metrics.setup_process(load_settings())


def post_worker_init(worker):
    from controlsvc.ops.runner import gunicorn_post_worker_init

    gunicorn_post_worker_init(worker)


def child_exit(server, worker):
    from controlsvc import metrics

    metrics.gunicorn_child_exit(server, worker)
