"""WSGI entry point for gunicorn: `gunicorn wsgi:app`.

Run from this folder, gunicorn also reads gunicorn.conf.py: `feedsvc serve`'s settings.
"""

from feedsvc import create_app

app = create_app()
