"""`ProbeTask` subclasses whichever StreamTask the implementation under test provides.

The base is named by the setting STREAMSPEC_TASK_BASE (a dotted path), which the harness sets from
the adapter before Django starts; there is no migration because the base's fields differ between
implementations (the harness creates the table with `migrate --run-syncdb`).
"""

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string

from harness.probe import stacks
from harness.probe.gates import _gates, current_gates

StreamTaskBase = import_string(settings.STREAMSPEC_TASK_BASE)


class ProbeTask(StreamTaskBase):
    label = models.CharField(max_length=64, default="", blank=True)

    class Meta:
        app_label = "streamspec_probe"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        gates = _gates.get()
        if gates is not None and gates.capture_stacks:
            # Inside a run: remember where this Python object was made (for bug reports).
            self._streamspec_created = stacks.here(2)

    async def process(self):
        return await current_gates().run(self)
