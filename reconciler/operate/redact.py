"""Take secrets out of text before it is logged, stored or sent.

What counts as secret is decided from the loaded spec, not guessed from the text: every env
value and every interpolated part (``${env:…}``, ``${file:…}``) of length ≥ 4, but those of
the project's name and folders (``NAMES_AND_PLACES``). Shorter values are too common ("1",
"yes", "app") to replace without making logs unreadable, and too short to be a credential
worth the name.

A secret is also masked in the forms programs print it in: the password of a URL-shaped value
(a driver logs its own rendering of ``DATABASE_URL``, never the spec's text), and the
URL-encoded and base64 forms of values of ≥ 6 characters (shorter ones would also match
ordinary words).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from reconciler.spec.interpolate import interpolated_values, value_at

if TYPE_CHECKING:  # engines import url_passwords: the YAML loader is not needed for that
    from reconciler.spec.load import LoadedSpec

MASK = "***"
# An env variable or a command-line flag named like this holds a credential.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_FLAG = re.compile(r"--?[A-Za-z][A-Za-z0-9_.-]*")
_WHERE = re.compile(r"(file|path|dir)$", re.IGNORECASE)  # --token-file /run/token: where it is
MIN_LENGTH = 4
ENCODED_MIN_LENGTH = 6
# Interpolated, these are not secrets: every container, volume and network is named after
# the project, the journal, lock and backup files live under these folders, and the S3
# endpoint, bucket and prefix say where backups go (the credentials come from the
# environment; a password in the endpoint's URL is still masked). Masking them would only
# garble the steps an operator must follow (``docker start ***-postgres``, a backup's path);
# ``docker ps`` and ``reconcile plan`` show them anyway.
NAMES_AND_PLACES = (("project",), ("state_dir",), ("backup", "local", "path"), ("backup", "s3", "endpoint"),
                    ("backup", "s3", "bucket"), ("backup", "s3", "prefix"))


class Redactor:
    """Replaces each known secret value by ``***``, longest first (so a value containing
    another is masked whole)."""

    def __init__(self, values: Iterable[str], min_length: int = MIN_LENGTH) -> None:
        forms = {form for v in values if v for form in secret_forms(v)}
        self.values = tuple(sorted({v for v in forms if len(v) >= min_length},
                                   key=lambda v: (-len(v), v)))
        self._pattern = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def redact_data(self, data: object) -> object:
        """Every string inside dicts, lists and tuples; keys are names, not secrets, and kept."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {k: self.redact_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v) for v in data]
        return data

    @classmethod
    def for_spec(cls, loaded: LoadedSpec, running: Iterable[dict] = ()) -> Redactor:
        """Every env value of every service, every value of a secret flag on a command line
        (``--requirepass X``) and every interpolated part of the spec, but the project's name
        and folders; and the secrets the ``running`` containers (inspect documents) were
        started with, which a spec that rotated them no longer holds but their logs may."""
        env = [v.get_secret_value() for s in loaded.spec.services.values() for v in s.env.values()]
        flags = [v for name in loaded.spec.services for v in command_secrets(loaded, name)]
        started = [v for doc in running for v in container_secrets(doc)]
        endpoint = url_passwords(value_at(loaded.spec, ("backup", "s3", "endpoint")) or "")
        return cls(_not_public(loaded, [*env, *flags, *started, *endpoint,
                                        *interpolated_values(loaded, skip=NAMES_AND_PLACES)]))

    @classmethod
    def for_service(cls, loaded: LoadedSpec, service: str) -> Redactor:
        """One service's env values and secret flags, plus every interpolated part of the spec.
        Not for a container's logs: a service can print another's secret (a URL it was given)."""
        env = [v.get_secret_value() for v in loaded.spec.services[service].env.values()]
        flags = command_secrets(loaded, service)
        return cls(_not_public(loaded, [*env, *flags, *interpolated_values(loaded, skip=NAMES_AND_PLACES)]))


def command_secrets(loaded: LoadedSpec, service: str) -> list[str]:
    """The values of secret flags on the service's entrypoint and command lines."""
    spec = loaded.spec.services[service]
    return [*flag_secrets(spec.entrypoint or ()), *flag_secrets(spec.command or ())]


def container_secrets(doc: dict) -> list[str]:
    """What a container was started with that is secret: env values named like a secret (not
    ``*_FILE`` paths), URL passwords, secret flags' values. Not every env value, as for the
    spec: an image's own (``PATH``, ``REDIS_VERSION``) would garble every log line."""
    config = doc.get("Config") or {}
    env = [item.split("=", 1) for item in config.get("Env") or () if isinstance(item, str) and "=" in item]
    args = [str(a) for a in (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))]
    return [*(value for key, value in env if SECRET_NAME.search(key) and not key.endswith("_FILE")),
            *(password for _, value in env for password in url_passwords(value)), *flag_secrets(args)]


def secret_flag_values(args: Sequence[str]) -> dict[int, tuple[str, str]]:
    """Index → (prefix, value) of each element of a command line that holds the value of a flag
    named like a secret: ``--requirepass X`` (X's index, no prefix), ``--db-password=X`` (that
    element's index, prefix ``--db-password=``)."""
    found: dict[int, tuple[str, str]] = {}
    for index, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if not _FLAG.fullmatch(name) or not SECRET_NAME.search(name) or _WHERE.search(name):
            continue
        if eq and value:
            found[index] = (name + eq, value)
        elif not eq and index + 1 < len(args) and args[index + 1] and not args[index + 1].startswith("-"):
            found[index + 1] = ("", args[index + 1])
    return found


# Inside one element that is a shell line (``sh -c "exec server --db-password=X"``): a flag and
# its value (``--name=X``, ``--name X``), or a variable assignment (``PGPASSWORD=X psql``); the
# value a word, or a quoted string, never another flag.
_VALUE = r"""(?!-)(?:"[^"]*"|'[^']*'|[^\s"';&|]+)"""
_INLINE = re.compile(rf"""(?<![\w.-])(?:(?P<flag>--?[A-Za-z][A-Za-z0-9_.-]*)(?:=|[ \t]+)(?P<fvalue>{_VALUE})"""
                     rf"""|(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<vvalue>{_VALUE}))""")


def inline_secret_spans(text: str) -> list[tuple[int, int]]:
    """Where, in a shell line, the values of secret flags and variables are (start, end), and
    the passwords of URLs in it. Only for text with a space in it: a whole argument that is
    a flag is ``secret_flag_values``' business."""
    if not any(c.isspace() for c in text):
        return []
    spans = []
    for match in _INLINE.finditer(text):
        group = "fvalue" if match["flag"] else "vvalue"
        name = match["flag"] or match["var"]
        if not SECRET_NAME.search(name) or _WHERE.search(name):
            continue
        start, end = match.span(group)
        if text[start] in "\"'":
            start, end = start + 1, end - 1
        if end > start:
            spans.append((start, end))
    for match in re.finditer(r"\S+://\S+", text):
        for password in url_passwords(match.group().strip("\"'")):
            at = text.find(password, match.start(), match.end())
            if at >= 0:
                spans.append((at, at + len(password)))
    return sorted(set(spans))


def _masked_inline(text: str, mask: str) -> str:
    for start, end in reversed(inline_secret_spans(text)):
        text = text[:start] + mask + text[end:]
    return text


def flag_secrets(args: Sequence[str]) -> list[str]:
    """The values of secret flags of a command line, also inside an element that is a shell line."""
    return [*(value for _, value in secret_flag_values(args).values()),
            *(arg[start:end] for arg in args for start, end in inline_secret_spans(arg))]


def mask_flag_values(args: Sequence[str], mask: str) -> list[str]:
    """``args`` with each secret flag's value replaced by ``mask`` (``--requirepass=<mask>``),
    also inside an element that is a shell line (``sh -c "… --db-password=<mask>"``)."""
    out = [_masked_inline(arg, mask) for arg in args]
    for index, (prefix, _) in secret_flag_values(args).items():
        out[index] = prefix + mask
    return out


def _not_public(loaded: LoadedSpec, values: list[str]) -> list[str]:
    """``values`` but the project's name and folders: an env value equal to one
    (``POSTGRES_DB: healthcare`` in project healthcare) is no secret, and masking it turned
    every container name into ``***-postgres``."""
    public = {value for path in NAMES_AND_PLACES if (value := value_at(loaded.spec, path)) is not None}
    # database names the spec writes literally in backup.databases are in every plan: masking
    # the same value taken from POSTGRES_DB turned "database healthcare" into "database ***"
    public |= {db for name, service in loaded.spec.services.items()
               for i, db in enumerate(service.backup.databases)
               if loaded.shown(("services", name, "backup", "databases", i), db) == db}
    return [v for v in values if v not in public]


def secret_forms(value: str) -> set[str]:
    """``value``, the password of it when it is a URL, and their encoded forms."""
    plain = {value, *url_passwords(value)}
    return plain | {form for v in plain if len(v) >= ENCODED_MIN_LENGTH for form in _encoded(v)}


def url_passwords(value: str) -> list[str]:
    """The userinfo password of a URL-shaped value, as written and percent-decoded
    (``postgresql://app:p%40ss@db/x`` → ``p%40ss``, ``p@ss``); none for anything else."""
    if "://" not in value:
        return []
    try:
        password = urlsplit(value.strip()).password
    except ValueError:  # not a URL after all (e.g. an unclosed IPv6 bracket)
        return []
    return list(dict.fromkeys((password, unquote(password)))) if password else []


def _encoded(value: str) -> set[str]:
    b64 = base64.b64encode(value.encode()).decode()
    return {quote(value, safe=""), b64, b64.rstrip("=")}
