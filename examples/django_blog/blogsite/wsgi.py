"""WSGI entry point: gunicorn blogsite.wsgi (see docs/django.md)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blogsite.settings")
application = get_wsgi_application()
