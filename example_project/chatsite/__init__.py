"""Project configuration of the example chat: settings, URLs, ASGI entry point."""
