"""System checks for the ``OPENAI_DJANGO_SESSIONS`` setting."""
