from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "harness.probe"
    label = "streamspec_probe"
    verbose_name = "streamspec probe tasks"
    default_auto_field = "django.db.models.BigAutoField"
