from django.apps import AppConfig


class ExampleConfig(AppConfig):
    name = "reference_impl.example"
    label = "example"
    verbose_name = "Example streaming tasks"
    default_auto_field = "django.db.models.BigAutoField"
