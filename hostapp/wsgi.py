"""WSGI entry point: ``gunicorn hostapp.wsgi:app``."""

from hostapp.app import create_app

app = create_app()
