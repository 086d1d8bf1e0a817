"""What a database's dump needs from outside it: roles, and the database's own properties.

``pg_dump`` of one database leaves out the roles its objects belong to (they are cluster
wide) and, without ``--create``, the database's owner, privileges, settings and comment.
Restored onto a fresh server (a lost volume, a major upgrade) such a dump fails at the
first ``ALTER … OWNER TO app`` and, even when it loads, silently turns a ``REVOKE CONNECT
… FROM PUBLIC`` back into the default. So each database's part of the backup starts with
SQL that, run in the database being restored (the staging copy, or by hand with
``psql -d NAME``):

- creates each role the dump may need, with its attributes, password hash, settings and
  memberships, ONLY if no role of that name exists (an existing role is never changed: a
  password rotated since the backup stays rotated). Not the user the backup connects as:
  a restore connects as that user too, so it exists wherever the file can be restored;
- gives the current database (``current_database()``, so a staging copy renamed later
  keeps them) the owner, privileges, connection limit, settings and comment it had, and
  each role the settings it had in this database only (``ALTER ROLE … IN DATABASE … SET``,
  as ``pg_dump --create`` does: they are dropped with the database they belong to).

Read from the catalogs in the dump's own snapshot transaction. Password hashes need
``pg_authid`` (a superuser, as the lab's and the seed's users are); without it the roles
are recreated without a password.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

HEADER = b"-- reconcile: roles and database properties this dump needs (roles only if missing)\n"

_ROLES = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, {password}
FROM pg_catalog.pg_roles r {join}
WHERE r.rolname !~ '^pg_' AND r.rolname <> current_user
ORDER BY r.rolname
"""
_MEMBERSHIPS = """
SELECT g.rolname, m.rolname, a.admin_option
FROM pg_catalog.pg_auth_members a
JOIN pg_catalog.pg_roles g ON g.oid = a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member
WHERE m.rolname !~ '^pg_'
ORDER BY 1, 2
"""
_ROLE_SETTINGS = """
SELECT r.rolname, s.setconfig
FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase = 0 AND r.rolname !~ '^pg_'
"""
_ROLE_IN_DATABASE_SETTINGS = """
SELECT r.rolname, s.setconfig
FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
WHERE d.datname = pg_catalog.current_database() AND s.setrole <> 0 AND r.rolname !~ '^pg_'
ORDER BY 1
"""
_DATABASE = """
SELECT pg_catalog.pg_get_userbyid(d.datdba), d.datconnlimit, d.datacl IS NOT NULL,
       pg_catalog.shobj_description(d.oid, 'pg_database'),
       (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
        WHERE s.setdatabase = d.oid AND s.setrole = 0)
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""
_DATABASE_ACL = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       a.privilege_type, a.is_grantable
FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
WHERE d.datname = pg_catalog.current_database()
ORDER BY 1 NULLS FIRST, 2
"""
_ROLE_FLAGS = (("SUPERUSER", 1), ("INHERIT", 2), ("CREATEROLE", 3), ("CREATEDB", 4),
               ("LOGIN", 5), ("REPLICATION", 6), ("BYPASSRLS", 7))
# Settings whose value is a list of quoted items (pg_dump's variable_is_guc_list_quote).
_LIST_SETTINGS = {"local_preload_libraries", "search_path", "session_preload_libraries",
                  "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"}


@dataclass(frozen=True)
class Role:
    name: str
    flags: tuple[str, ...]
    connection_limit: int
    valid_until: str | None
    password: str | None
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Database:
    owner: str
    connection_limit: int
    acl: tuple[tuple[str | None, str, bool], ...] | None  # None: the default privileges
    comment: str | None
    settings: tuple[str, ...]
    role_settings: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (role, settings) in this database


def capture(conn: psycopg.Connection) -> bytes:
    """The SQL for the connected database, read in the caller's transaction."""
    readable = conn.execute("SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
                            ).fetchone()[0]
    query = _ROLES.format(password="a.rolpassword" if readable else "NULL",
                          join="JOIN pg_catalog.pg_authid a ON a.oid = r.oid" if readable else "")
    role_settings = {name: tuple(config or ()) for name, config in conn.execute(_ROLE_SETTINGS)}
    roles = [Role(row[0], tuple(flag for flag, at in _ROLE_FLAGS if row[at]), row[8], row[9], row[10],
                  role_settings.get(row[0], ()))
             for row in conn.execute(query)]
    memberships = [(g, m, bool(admin)) for g, m, admin in conn.execute(_MEMBERSHIPS)]
    owner, limit, has_acl, comment, settings = conn.execute(_DATABASE).fetchone()
    acl = tuple((g, p, bool(w)) for g, p, w in conn.execute(_DATABASE_ACL)) if has_acl else None
    role_settings = tuple((name, tuple(config or ())) for name, config in conn.execute(_ROLE_IN_DATABASE_SETTINGS))
    database = Database(owner, limit, acl, comment, tuple(settings or ()), role_settings)
    return render(roles, memberships, database, conn)


def render(roles: list[Role], memberships: list[tuple[str, str, bool]], database: Database,
           context: psycopg.Connection | None) -> bytes:
    """The SQL text; ``context`` only quotes (a connection's encoding and conventions)."""
    tag = f"$reconcile_{secrets.token_hex(6)}$"
    lines = [HEADER.decode()]
    if roles:
        lines.append(_roles_block(tag, roles, memberships, context))
    placeholder = sql.Identifier(f"reconcile_database_{secrets.token_hex(6)}").as_string(context)
    for statement in _database_statements(database, placeholder):
        text = statement.as_string(context).replace("%", "%%").replace(placeholder, "%I")
        body = sql.SQL("EXECUTE pg_catalog.format({}, pg_catalog.current_database());").format(
            sql.Literal(text))
        lines.append(f"DO {tag} BEGIN {body.as_string(context)} END {tag};\n")
    return "".join(lines).encode()


def _roles_block(tag: str, roles: list[Role], memberships: list[tuple[str, str, bool]], context) -> str:
    """One DO block: each missing role is created; then the memberships of the roles it
    created (an existing role keeps the memberships it has now)."""
    def execute(statement: sql.Composable) -> str:
        return sql.SQL("EXECUTE {};").format(sql.Literal(statement.as_string(context))).as_string(context)

    lines = [f"DO {tag} DECLARE created text[] := '{{}}'; BEGIN\n"]
    for role in roles:
        name = sql.Literal(role.name).as_string(context)
        run = " ".join(execute(statement) for statement in _create_role(role))
        lines.append(f"IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN "
                     f"{run} created := created || {name}::text; END IF;\n")
    for group, member, admin in memberships:
        grant = sql.SQL("GRANT {} TO {}{}").format(sql.Identifier(group), sql.Identifier(member),
                                                   sql.SQL(" WITH ADMIN OPTION" if admin else ""))
        lines.append(f"IF {sql.Literal(member).as_string(context)} = ANY (created) THEN "
                     f"{execute(grant)} END IF;\n")
    lines.append(f"END {tag};\n")
    return "".join(lines)


def _create_role(role: Role) -> list[sql.Composable]:
    options = [sql.SQL(flag if flag in role.flags else f"NO{flag}") for flag, _ in _ROLE_FLAGS]
    options.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role.connection_limit)))
    if role.password:
        options.append(sql.SQL("PASSWORD {}").format(sql.Literal(role.password)))
    if role.valid_until:
        options.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role.valid_until)))
    create = sql.SQL("CREATE ROLE {} WITH {}").format(sql.Identifier(role.name), sql.SQL(" ").join(options))
    return [create, *(sql.SQL("ALTER ROLE {} SET {}").format(sql.Identifier(role.name), _setting(item))
                      for item in role.settings)]


def _database_statements(database: Database, placeholder: str) -> list[sql.Composable]:
    """Statements naming the database ``placeholder`` (the current one, at restore time)."""
    this = sql.SQL(placeholder)
    out: list[sql.Composable] = [sql.SQL("ALTER DATABASE {} OWNER TO {}").format(this, sql.Identifier(database.owner))]
    if database.connection_limit != -1:
        out.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
            this, sql.Literal(database.connection_limit)))
    if database.acl is not None:
        out.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(this))
        for grantee, privilege, grantable in database.acl:
            who = sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
            out.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege), this, who, sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    for item in database.settings:
        out.append(sql.SQL("ALTER DATABASE {} SET {}").format(this, _setting(item)))
    for role, items in database.role_settings:
        out += [sql.SQL("ALTER ROLE {} IN DATABASE {} SET {}").format(sql.Identifier(role), this, _setting(item))
                for item in items]
    if database.comment is not None:
        out.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(this, sql.Literal(database.comment)))
    return out


def _setting(item: str) -> sql.Composable:
    """``name=value`` as stored in ``setconfig`` → ``name = 'value'`` (lists item by item)."""
    name, _, value = item.partition("=")
    setting = sql.Identifier(*name.split("."))  # a custom one is "app"."setting"
    if name.lower() in _LIST_SETTINGS:
        values = [sql.Literal(v) for v in split_list(value)] or [sql.Literal("")]
        return sql.SQL("{} = {}").format(setting, sql.SQL(", ").join(values))
    return sql.SQL("{} = {}").format(setting, sql.Literal(value))


def split_list(value: str) -> list[str]:
    """A list setting's stored text (``"$user", public``) → its items (SplitGUCList)."""
    items = []
    for match in re.finditer(r'\s*(?:"((?:[^"]|"")*)"|([^,\s]+))\s*(?:,|$)', value):
        quoted, bare = match.groups()
        if quoted is None and bare is None:
            continue
        items.append(quoted.replace('""', '"') if quoted is not None else bare)
    return items
