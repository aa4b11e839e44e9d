"""The chat app, and the admin where its stored conversations can be browsed."""

from django.contrib import admin
from django.urls import include, path

from chat import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("chat.urls")),
]
