from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

__all__ = ["OpenAIDjangoSessionsConfig"]


class OpenAIDjangoSessionsConfig(AppConfig):
    name = "openai_django_sessions"
    # Not the model's "Agent sessions": the admin's breadcrumb shows both, one after the other.
    verbose_name = _("Agent memory")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import pre_delete

        from . import _checks as checks  # noqa: F401  (registers the system checks)
        from .deletion import delete_owned_elsewhere

        pre_delete.connect(
            delete_owned_elsewhere,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="openai_django_sessions.delete_owned_elsewhere",
        )
