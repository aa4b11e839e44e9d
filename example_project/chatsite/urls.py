"""The whole site is the chat app."""

from django.urls import include, path

urlpatterns = [path("", include("chat.urls"))]
