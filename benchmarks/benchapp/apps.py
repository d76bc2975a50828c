from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "benchmarks.benchapp"
    label = "streamspec_bench"
    verbose_name = "streamspec benchmark tasks"
    default_auto_field = "django.db.models.BigAutoField"
