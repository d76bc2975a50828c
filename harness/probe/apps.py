from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "harness.probe"
    label = "streamspec_probe"
    verbose_name = "streamspec probe tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # In a server process of the HTTP mode, probe tasks take their steps from the harness.
        from harness.probe.gates import install_process_gates
        from harness.wire.link import from_environment

        gates = from_environment()
        if gates is not None:
            install_process_gates(gates)
