"""Translations: the French catalogue is complete, compiled as shipped, and used by the admin.

The catalogue checks need GNU gettext (``msgfmt``, ``xgettext``), which
``scripts/test`` installs.
"""

from __future__ import annotations

import gettext
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from openai_django_sessions.models import AgentMessage, AgentSession

PACKAGE = Path(__file__).resolve().parents[1] / "openai_django_sessions"
CATALOGUE = PACKAGE / "locale" / "fr" / "LC_MESSAGES"


def msgfmt(po: Path, mo: Path) -> str:
    """Compile ``po`` to ``mo``, failing on any error; returns msgfmt's statistics."""
    done = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(mo), str(po)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_french_catalogue_translates_every_string_the_app_marks(tmp_path: Path) -> None:
    # makemessages on a copy of the package merges the strings the code marks
    # today into the catalogue: any new, changed or fuzzy one shows in the counts.
    copy = tmp_path / "openai_django_sessions"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "fr", "--no-location"],
        cwd=copy,
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )

    statistics = msgfmt(copy / "locale/fr/LC_MESSAGES/django.po", tmp_path / "merged.mo")

    assert "untranslated" not in statistics and "fuzzy" not in statistics, statistics
    assert " translated messages." in statistics, statistics


def test_the_shipped_mo_file_is_the_po_file_compiled(tmp_path: Path) -> None:
    msgfmt(CATALOGUE / "django.po", tmp_path / "django.mo")

    with (CATALOGUE / "django.mo").open("rb") as shipped, (tmp_path / "django.mo").open("rb") as f:
        assert gettext.GNUTranslations(shipped)._catalog == gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]


@pytest.fixture
def conversation() -> AgentSession:
    session = AgentSession.objects.create(session_id="en-français", title="Bonjour")
    AgentMessage.objects.bulk_create(
        [AgentMessage(session=session, data={"role": "user", "content": "salut"})] * 2
    )
    return session


def in_french(client: Client, url: str, data: dict[str, str] | None = None) -> str:
    """The page at ``url`` (posted ``data``, if any) as a French-speaking user gets it."""
    with translation.override("fr"):
        response = client.get(url) if data is None else client.post(url, data)
    return response.content.decode()


def change_url(session: AgentSession) -> str:
    return reverse("admin:openai_django_sessions_agentsession_change", args=[session.pk])


@pytest.mark.django_db
def test_the_admin_changelist_reads_in_french(
    admin_client: Client, conversation: AgentSession
) -> None:
    html = in_french(admin_client, reverse("admin:openai_django_sessions_agentsession_changelist"))

    for label in ("Identifiant de session", "Propriétaire", "Jetons", "Dernière activité"):
        assert f">{label}</a>" in html, label
    assert "Sessions d\u2019agent" in html
    assert "Par dernière activité" in html


@pytest.mark.django_db
def test_the_admin_change_page_reads_in_french(
    admin_client: Client, conversation: AgentSession
) -> None:
    html = in_french(admin_client, change_url(conversation))

    for label in ("Identifiant de session", "Titre", "Métadonnées", "Consommation"):
        assert f">{label}" in html, label
    assert "Éléments 1 à 2 sur 2." in html
    assert "0 jetons (0 en entrée, dont 0 en cache ; 0 en sortie" in html


@pytest.mark.django_db
def test_metadata_that_is_not_an_object_is_refused_in_french(
    admin_client: Client, conversation: AgentSession
) -> None:
    html = in_french(admin_client, change_url(conversation), {"title": "t", "metadata": "[1]"})

    assert "Les métadonnées doivent être un objet JSON" in html


@pytest.mark.django_db
def test_the_delete_page_counts_messages_in_french(
    admin_client: Client, conversation: AgentSession
) -> None:
    url = reverse("admin:openai_django_sessions_agentsession_delete", args=[conversation.pk])

    html = in_french(admin_client, url)

    assert "Session d\u2019agent : en-français (2 messages)" in html
