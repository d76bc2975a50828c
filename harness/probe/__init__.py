"""The probe: a task model of the harness, subclassing the implementation's StreamTask, whose
`process()` does nothing on its own: it waits on gates the scenario opens (send the next event,
return, raise), so the scenario decides when every event happens."""
