"""Settings of the example chat.

Everything a visitor may want to change comes from the environment:

- ``DATABASE_URL``: ``postgres://...``, ``mysql://...`` or ``sqlite:///path``;
  default a SQLite file next to ``manage.py`` (WAL enabled).
- ``OPENAI_API_KEY`` / ``OPENAI_MODEL``: a real model instead of the offline one
  (read at each turn, see ``chat.models_choice``).
- ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS``; ``DJANGO_DEBUG=1`` turns on
  Django's debug pages (off by default: they show settings and code to anyone).
"""

from __future__ import annotations

import os
from pathlib import Path

from chatsite.database_url import parse_database_url, sqlite_database

BASE_DIR = Path(__file__).resolve().parent.parent

# The example binds to 127.0.0.1; a deployment sets its own key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"] + [
    host for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host
]

# The admin (at /admin/) shows the stored conversations with the app's own ModelAdmin;
# it uses Django's standard auth, which sign-in pages can reuse as well.
INSTALLED_APPS = [
    "django.contrib.admin",
    # openai_django_sessions stores each conversation's owner: the user model.
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "openai_django_sessions",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.middleware.friendly_not_found",
]

ROOT_URLCONF = "chatsite.urls"
# Served by the ASGI application itself (chatsite.asgi), so the admin has its styles
# under uvicorn too, without a separate web server.
STATIC_URL = "static/"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_database_url = os.environ.get("DATABASE_URL", "").strip()
DATABASES = {
    "default": (
        parse_database_url(_database_url, base_dir=BASE_DIR)
        if _database_url
        else sqlite_database(BASE_DIR / "db.sqlite3")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Users sign in with Django's auth views (``/accounts/login/``); each sees only the
# conversations stored with them as owner.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:list"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
SESSION_COOKIE_SAMESITE = "Lax"

# "Run in background" enqueues the turn with django.tasks (Django >= 6.0). The
# thread backend runs it after the response has gone out, in this process; a
# queue with workers (a database backend, for instance) can replace it here.
TASKS = {
    "default": {
        "BACKEND": "chat.task_backends.ThreadBackend",
        "OPTIONS": {"MAX_WORKERS": 4},
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chat": {"handlers": ["console"], "level": "INFO"}},
}
