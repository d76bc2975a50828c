from django.apps import AppConfig
from django.core.signals import setting_changed


class StreamingConfig(AppConfig):
    name = "reference_impl.streaming"
    label = "streaming"
    verbose_name = "Streaming tasks (streamspec reference)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Installs the process-wide coordinator that tasks send through (see context.py).
        from . import coordinator  # noqa: F401
        from .conf import reload_settings

        def on_setting_changed(setting: str, **kwargs: object) -> None:
            if setting.startswith("STREAMING_"):
                reload_settings()

        setting_changed.connect(on_setting_changed, weak=False, dispatch_uid="streaming-settings")
