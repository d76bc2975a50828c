from django.urls import path

from . import views

app_name = "streaming"
urlpatterns = [
    path("stream/<str:app_name>/<str:model_name>/<str:task_id>", views.stream_view, name="stream"),
    path("health", views.health_view, name="health"),
]
