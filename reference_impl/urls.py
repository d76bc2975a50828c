from django.urls import include, path

urlpatterns = [path("", include("reference_impl.streaming.urls"))]
