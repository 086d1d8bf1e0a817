"""Dependency checks shared by the web app, the worker and the health check.

Each check reports "ok", "skipped" (its URL variable is unset, so it cannot fail) or
"error: ..." so a failing /health says which dependency broke and why.
"""
import os

TIMEOUT_SECONDS = 2


def check_postgres():
    url = os.environ.get("DATABASE_URL")
    if not url:
        return "skipped"
    try:
        import psycopg2

        conn = psycopg2.connect(url, connect_timeout=TIMEOUT_SECONDS)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
        return "ok"
    except Exception as exc:  # any failure is reported, never raised
        return _describe(exc)


def check_redis():
    url = os.environ.get("REDIS_URL")
    if not url:
        return "skipped"
    try:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    except Exception as exc:
        return _describe(exc)


def _describe(exc):
    lines = str(exc).strip().splitlines()
    return "error: " + (lines[0] if lines else type(exc).__name__)


def all_checks():
    return {"postgres": check_postgres(), "redis": check_redis()}


def healthy(results):
    return all(value in ("ok", "skipped") for value in results.values())


def version():
    return os.environ.get("APP_VERSION", "unknown")
