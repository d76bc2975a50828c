"""On PostgreSQL, a trigger on the event log that notifies listeners of every logged event (push.py);
nothing on other databases."""

from django.db import migrations

CREATE = [
    """
    CREATE OR REPLACE FUNCTION streaming_event_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('streaming_events', NEW.task_label || ':' || NEW.task_pk);
        RETURN NULL;
    END
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS streaming_event_notify ON {table}",
    """
    CREATE TRIGGER streaming_event_notify AFTER INSERT ON {table}
        FOR EACH ROW EXECUTE FUNCTION streaming_event_notify()
    """,
]
DROP = [
    "DROP TRIGGER IF EXISTS streaming_event_notify ON {table}",
    "DROP FUNCTION IF EXISTS streaming_event_notify()",
]


def _run(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model("streaming", "StreamEvent")._meta.db_table)
        for statement in statements:
            schema_editor.execute(statement.format(table=table), params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("streaming", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(_run(CREATE), _run(DROP)),
    ]
