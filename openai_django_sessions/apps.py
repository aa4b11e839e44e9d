from django.apps import AppConfig


class OpenAIDjangoSessionsConfig(AppConfig):
    name = "openai_django_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
