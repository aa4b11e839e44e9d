"""The chat app, Django's sign-in views, and the admin where conversations can be browsed."""

from django.contrib import admin
from django.urls import include, path

from chat import views

# The admin's app list is a link away (Home): without the sidebar beside it, the
# conversations' list has the width of the window.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    # login/ and logout/ (plus password change and reset, unused here).
    path("accounts/", include("django.contrib.auth.urls")),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("chat.urls")),
]
