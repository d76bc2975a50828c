"""Make sure the PostgreSQL database of a DATABASE_URL exists (create it if the server has none by
that name); exit 2 with a clear message when the server cannot be reached."""

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def main(url: str) -> int:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql", "pgsql") or not name:
        print(f"ensure_postgres: {url!r} is not a PostgreSQL URL with a database name", file=sys.stderr)
        return 2
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"ensure_postgres: created database {name}")
    except psycopg.OperationalError as exc:
        print(f"ensure_postgres: PostgreSQL at {parts.hostname}:{parts.port or 5432} is not reachable: "
              f"{str(exc).strip()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
