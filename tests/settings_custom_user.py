"""The test settings with ``AUTH_USER_MODEL`` pointing at ``tests.custom_user.Member``.

Run by ``tests/test_custom_user.py`` in a process of its own, with a database
name of its own (``TEST_DB_NAME``), so that it can share a server with the suite.
"""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "tests.custom_user",
    "openai_django_sessions",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.custom_user.urls"
AUTH_USER_MODEL = "custom_user.Member"
