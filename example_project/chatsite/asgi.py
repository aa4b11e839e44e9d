"""ASGI entry point: ``uvicorn chatsite.asgi:application`` (or daphne).

Static files (the admin's styles) are served by the application itself, so the
example needs no web server in front; a deployment would use one, or WhiteNoise.
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

application = ASGIStaticFilesHandler(get_asgi_application())
