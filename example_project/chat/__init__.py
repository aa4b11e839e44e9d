"""The example chat: conversations stored with ``DjangoSession``."""
