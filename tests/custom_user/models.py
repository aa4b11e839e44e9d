"""A custom user model unlike Django's: a UUID primary key, signing in by email."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class MemberManager(BaseUserManager["Member"]):
    def create_user(self, email: str, password: str | None = None) -> Member:
        member = self.model(email=self.normalize_email(email))
        member.set_password(password)
        member.save(using=self._db)
        return member


class Member(AbstractBaseUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"

    objects = MemberManager()
