from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("new/", views.new_conversation, name="new"),
    path("search/", views.search_conversations, name="search"),
    path("c/<str:session_id>/", views.conversation, name="conversation"),
    path("c/<str:session_id>/send/", views.send_message, name="send"),
    path("c/<str:session_id>/stream/", views.stream_message, name="stream"),
    path("c/<str:session_id>/rename/", views.rename, name="rename"),
    path("c/<str:session_id>/undo/", views.undo, name="undo"),
    path("c/<str:session_id>/clear/", views.clear, name="clear"),
    path("c/<str:session_id>/delete/", views.delete, name="delete"),
    path("c/<str:session_id>/status/", views.status, name="status"),
    path("c/<str:session_id>/edit/<int:index>/", views.edit, name="edit"),
]
