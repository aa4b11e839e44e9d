from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

__all__ = ["OpenAIDjangoSessionsConfig"]


class OpenAIDjangoSessionsConfig(AppConfig):
    name = "openai_django_sessions"
    verbose_name = _("Agent sessions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
