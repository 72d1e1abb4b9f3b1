"""WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from feedsvc import create_app

app = create_app()
