"""gunicorn's settings for `gunicorn wsgi:app` run from this folder (gunicorn reads this
file from its working directory): the same as `feedsvc serve` passes, taken from
feedsvc.serving, so that both serve alike. Flags on gunicorn's command line or in
GUNICORN_CMD_ARGS still win over them.
"""

import os

from feedsvc import serving

worker_class = serving.SETTINGS["worker_class"]
threads = serving.SETTINGS["threads"]
timeout = serving.SETTINGS["timeout"]
preload_app = serving.SETTINGS["preload_app"]
control_socket_disable = serving.SETTINGS["control_socket_disable"]
# As `feedsvc serve --workers` defaults to; WEB_CONCURRENCY is gunicorn's own default.
workers = int(os.environ.get("WEB_CONCURRENCY", serving.WORKERS))
