"""`reconcile validate` and the JSON Schema that editors check a spec against (`reconcile schema`)
accept the same specs, as far as JSON Schema can say it (QA found them apart both ways).

The schema reads the YAML as an editor does: before `${…}` interpolation, a date as text. So
the table holds no interpolation; what interpolation changes is tested on its own below."""

from __future__ import annotations

import ipaddress
import random
import re
import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.durations import DURATION_TEXT, parse_duration
from reconciler.spec.forms import IPV4, IPV6, PORT_NUMBER
from reconciler.spec.load import load_spec
from reconciler.spec.models import MOUNT_SCHEMA, PORT_SCHEMA, Port, _parse_mount, _parse_port
from reconciler.spec.schema import schema
from reconciler.spec.stores import ENDPOINT, endpoint_problem
from reconciler.spec.yamlread import Written, yaml_reader

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Draft202012Validator(schema())

SPEC = """\
version: 1
project: demo
volumes:
  data: {}
networks:
  backend: {}
services:
  db:
    image: postgres:16
    networks: [backend]
  api:
    image: app:1
"""


def as_an_editor_reads(node: object) -> object:
    """Plain data as yaml-language-server sees it (YAML 1.2: a date is text)."""
    if isinstance(node, dict):
        return {(k.text if isinstance(k, Written) else str(k)): as_an_editor_reads(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_an_editor_reads(v) for v in node]
    if isinstance(node, Written):
        return node.text if isinstance(node.value, date) else node.value
    return node


def schema_accepts(text: str) -> bool:
    return VALIDATOR.is_valid(as_an_editor_reads(yaml_reader(True).load(text)))


def validate_accepts(path: Path, environ: dict | None = None) -> bool:
    try:
        load_spec(path, environ or {})
    except SpecError:
        return False
    return True


def spec(service: str = "", top: str = "", *, on: str = "db", swap: tuple[str, str] = ("", "")) -> str:
    """``SPEC`` with ``service`` keys added to service ``on``, ``swap[0]`` replaced by ``swap[1]``
    and ``top`` keys at the end."""
    text = SPEC.replace(*swap, 1) if swap[0] else SPEC
    if service:
        text = text.replace(f"  {on}:\n", f"  {on}:\n" + textwrap.indent(service, "    "), 1)
    return text + top


def s3(endpoint: str) -> str:
    return f"backup:\n  s3: {{ enabled: true, bucket: b, endpoint: '{endpoint}' }}\n"


ACCEPTED = {
    "depends on a list": spec("depends_on: [db]\n", on="api"),
    "depends on a mapping": spec("depends_on: {db: healthy}\n", on="api"),
    "env numbers and booleans": spec("env: {PGPORT: 5432, DEBUG: true, RATIO: 1.5, DAY: 2024-01-01}\n"),
    "durations with spaces": spec('health: {timeout: "1h 30m", interval: 2 s}\ndeploy: {drain: " 500 ms "}\n'),
    "durations as numbers": spec("health: {timeout: 90, interval: 0.5}\n"),
    "port forms": spec('ports: [5432, "127.0.0.1:15432:5432", "[::1]:80:80", "53/udp", "08080:80", 8081.0]\n'),
    "mounts": spec('volumes: ["data:/var/lib/postgresql/data", "/srv/x:/x:ro", " data:/y:rw "]\n'),
    "bound volume and a null entry": spec(swap=("  data: {}\n", "  data: {bind: /srv/data}\n  more:\n")),
    "whole-number floats": spec("health: {http: {port: 8000.0, expect_status: 204}}\n"),
    "a date as text": spec("user: 2024-01-01\n"),
    "s3 endpoint": spec(top=s3("https://eu2.contabostorage.com")),
    "s3 endpoint with a slash": spec(top=s3("http://127.0.0.1:9555/")),
    "retention keeps something": spec(top="backup: {retention: {daily: 0, weekly: 0, monthly: 1}}\n"),
    "flags": spec('stateful: true\nprotect: false\nvolumes: ["data:/d"]\nbackup: {stop_service: true}\n'),
}
REJECTED = {
    "protect as a string": spec('protect: "yes"\n'),
    "protect as YAML 1.1 yes": spec("protect: yes\n"),
    "protect as a number": spec("protect: 1\n"),
    "stateful as a quoted true": spec('stateful: "true"\nvolumes: ["data:/d"]\n'),
    "http port as a string": spec('health: {http: {port: "8000"}}\n'),
    "daily as a string": spec(top='backup: {retention: {daily: "7"}}\n'),
    "part size as a string": spec(top='backup: {s3: {part_size_mb: "64"}}\n'),
    "version as a string": spec(swap=("version: 1", 'version: "1"')),
    "version as true": spec(swap=("version: 1", "version: true")),
    "upper-case service name": spec(swap=("  api:", "  Dragonfly:")),
    "non-ASCII service name": spec(swap=("  api:", "  drägonfly:")),
    "upper-case volume name": spec(swap=("  data: {}\n", "  data: {}\n  Data: {}\n")),
    "network name with a space": spec(swap=("  backend: {}\n", "  backend: {}\n  back end: {}\n")),
    "changes class with a space": spec(top='changes: {"Infra Stuff": ["docker/**"]}\n'),
    "mount without a target path": spec('volumes: ["data:data"]\n'),
    "mount without a source": spec('volumes: [":rx"]\n'),
    "mount with a bad mode": spec('volumes: ["data:/x:rx"]\n'),
    "mount as a mapping": spec("volumes: [{source: data, target: x}]\n"),
    "port out of range": spec("ports: [99999]\n"),
    "port zero": spec("ports: [0]\n"),
    "port zero as text": spec('ports: ["0:80"]\n'),
    "host port out of range": spec('ports: ["99999:80"]\n'),
    "port range": spec('ports: ["a-b"]\n'),
    "port in other digits": spec('ports: ["٨٠"]\n'),
    "port as a mapping": spec("ports: [{container: 80, host: 80, host_ip: localhost}]\n"),
    "host IP out of range": spec('ports: ["127.0.0.256:80:80"]\n'),
    "IPv6 host IP with two ::": spec('ports: ["[1::2::3]:80:80"]\n'),
    "relative bind": spec(swap=("  data: {}\n", "  data: {bind: data/postgres}\n")),
    "env name with =": spec('env: {"A=B": v}\n'),
    "env value null": spec("env: {A: }\n"),
    "digits split by a space": spec('health: {timeout: "1 0s"}\n'),
    "duration in other digits": spec('health: {timeout: "٣s"}\n'),
    "duration as a boolean": spec("health: {timeout: true}\n"),
    "negative duration": spec("health: {timeout: -1}\n"),
    "memory in other digits": spec('mem_limit: "٥١٢m"\n'),
    "s3 endpoint with a bucket path": spec(top=s3("https://eu2.contabostorage.com/my-bucket")),
    "s3 endpoint with a prefix path": spec(top=s3("http://127.0.0.1:9555/qax-s3path")),
    "s3 endpoint with a query": spec(top=s3("http://127.0.0.1:9555?bucket=b")),
    "s3 endpoint without a host": spec(top=s3("http://:9000")),
    "s3 enabled without a bucket": spec(top="backup: {s3: {enabled: true}}\n"),
    "retention keeps nothing": spec(top="backup: {retention: {daily: 0, weekly: 0, monthly: 0}}\n"),
}


def verdicts(tmp_path: Path, text: str, environ: dict | None = None) -> tuple[bool, bool]:
    """(validate accepts, the schema accepts)."""
    path = tmp_path / "reconcile.yaml"
    path.write_text(text)
    return validate_accepts(path, environ), schema_accepts(text)


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=list(ACCEPTED))
def test_both_accept(tmp_path, text):
    assert verdicts(tmp_path, text) == (True, True)


@pytest.mark.parametrize("text", REJECTED.values(), ids=list(REJECTED))
def test_both_reject(tmp_path, text):
    assert verdicts(tmp_path, text) == (False, False)


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + _patterns(list(node.values()))
    return [p for item in node for p in _patterns(item)] if isinstance(node, list) else []


def test_the_schema_is_valid_and_its_patterns_are_ecma():
    Draft202012Validator.check_schema(schema())
    for pattern in _patterns(schema()):
        assert not re.search(r"\(\?P|\\[AZz]|\(\?[aiLmsux]|\\d", pattern), pattern  # Python-only, or \d


def test_reference_specs_pass_both(tmp_path):
    shutil.copy(ROOT / "specs" / "healthcare.yaml", tmp_path / "healthcare.yaml")
    (tmp_path / ".env.production").write_text("API_KEY=k\n")
    environ = {"POSTGRES_PASSWORD": "p", "S3_ENABLED": "true", "S3_ENDPOINT": "https://eu2.contabostorage.com"}
    assert validate_accepts(tmp_path / "healthcare.yaml", environ)
    assert validate_accepts(ROOT / "specs" / "lab.yaml", {"S3_ENABLED": "true", "LAB_API_STRATEGY": "recreate"})
    for name in ("healthcare.yaml", "lab.yaml"):
        assert schema_accepts((ROOT / "specs" / name).read_text()), name


# -- what interpolation gives is text: a boolean or number field still takes it ------------------

def test_interpolated_flags_and_numbers_are_taken_as_text(tmp_path):
    text = spec('protect: "${env:P}"\nhealth: {http: {port: "${env:PORT}"}}\n',
                top='backup: {retention: {daily: "${env:D}"}, s3: {enabled: "${env:E:-false}"}}\n')
    (tmp_path / "reconcile.yaml").write_text(text)
    loaded = load_spec(tmp_path / "reconcile.yaml", {"P": "true", "PORT": "8000", "D": "7"})
    db = loaded.spec.services["db"]
    assert (db.protect, db.health.http.port, loaded.spec.backup.retention.daily) == (True, 8000, 7)
    assert loaded.spec.backup.s3.enabled is False
    assert schema_accepts(text)


@pytest.mark.parametrize("service,words,hint", [
    ('protect: "yes"\n', "expected true or false", "without quotes"),
    ('health: {http: {port: "8000"}}\n', "expected a whole number", "without quotes"),
    ("ports: [{container: 80, host_ip: localhost}]\n", "a port is written as a number or as text", "8080:3000"),
    ("volumes: [{source: data, target: /d}]\n", "a mount is written as text", "postgres_data:/var"),
])
def test_a_lax_form_is_refused_with_what_to_write(tmp_path, service, words, hint):
    (tmp_path / "reconcile.yaml").write_text(spec(service))
    with pytest.raises(SpecErrors) as info:
        load_spec(tmp_path / "reconcile.yaml", {})
    [error] = info.value.errors
    assert words in error.message and hint in error.hint
    assert str(error.location).startswith(f"{tmp_path / 'reconcile.yaml'}:9:")


# -- the patterns the schema states, against the checks validate makes ---------------------------

def _valid_ip(version: type, text: str) -> bool:
    try:
        version(text)
    except ValueError:
        return False
    return True


def test_ipv6_pattern_is_what_ipaddress_takes():
    rng = random.Random(6)
    digits = "0123456789abcdefABCDEF"
    for _ in range(30_000):
        groups = ["".join(rng.choice(digits) for _ in range(rng.choice([0, 1, 2, 4, 4, 5])))
                  for _ in range(rng.randint(0, 9))]
        text = ":".join(groups)
        if rng.random() < 0.6:
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice([":", "::"]) + text[cut:]
        if text:
            assert bool(re.fullmatch(IPV6, text)) == _valid_ip(ipaddress.IPv6Address, text), text


def test_ipv4_pattern_is_what_ipaddress_takes():
    parts = ["0", "00", "01", "9", "10", "99", "100", "199", "249", "250", "255", "256", "300", "1000"]
    for text in (".".join(random.Random(n).choices(parts, k=4)) for n in range(3000)):
        assert bool(re.fullmatch(IPV4, text)) == _valid_ip(ipaddress.IPv4Address, text), text


def test_port_number_pattern_is_1_to_65535():
    for number in range(0, 70_001):
        for text in (str(number), f"0{number}"):
            assert bool(re.fullmatch(PORT_NUMBER, text)) == (1 <= number <= 65535), text


def _port_ok(text: str) -> bool:
    try:
        Port.model_validate(_parse_port(text))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("text", [
    "80", " 80 ", "8080:80", "127.0.0.1:80:80", "[::1]:80:80", "[fe80::1:2]:1:2/udp", "0.0.0.0:65535:1/tcp",
    "0", "65536", "80:0", "1.2.3.4:80", "1.2.3:80:80", "[::1]:80", "80/sctp", "80:80:80:80", "a-b", "80-81",
    "256.1.1.1:80:80", "[::g]:80:80", "80\n", "٨٠",
])
def test_port_pattern_is_what_validate_takes(text):
    assert bool(re.search(PORT_SCHEMA, text)) == _port_ok(text)


def _mount_ok(text: str) -> bool:
    try:
        _parse_mount(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("text", [
    "data:/d", "/srv:/d:ro", " data:/d:rw ", "data:/", "my data:/d", "data:/d e", "data:data", ":/d", " :/d",
    "data:/d:rx", "data:/d:ro:ro", "data", "/a:/b:c:d", "data:/d\n", "\tdata:/d",
])
def test_mount_pattern_is_what_validate_takes(text):
    assert bool(re.search(MOUNT_SCHEMA, text)) == _mount_ok(text)


def _duration_ok(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("text", [
    "30s", "1h30m", "1h 30m", " 2 m ", "500ms", "1.5h", "0s", "1h\t30m", "1 0s", "1.s", ".5s", "5", "s",
    "5x", "", " ", "1h30", "٣s", "1m s",
])
def test_duration_pattern_is_what_validate_takes(text):
    assert bool(re.search(f"^{DURATION_TEXT}$", text)) == _duration_ok(text)


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:9555", "https://eu2.contabostorage.com/", "HTTPS://S3.example.com:443",
    "https://user:pw@[::1]:9000", "http://h:0", "http://h:", "https://eu2.contabostorage.com/my-bucket",
    "http://127.0.0.1:9555/qax-s3path", "http://h/?", "http://h#f", "http://h//", "http://:9000", "ftp://h",
    "http://h:65536", "http://h:x", "http://[::1", "http://[1.2.3.4]", "http://h x", "s3.example.com",
])
def test_endpoint_pattern_is_what_validate_takes(text):
    assert bool(re.search(ENDPOINT, text)) == (endpoint_problem(text) is None)


# -- an S3 endpoint is the server only: a path would put backups where restore never looks -----

ENDPOINT_SPEC = spec(top='backup:\n  s3: { enabled: true, bucket: b, endpoint: "${env:S3_ENDPOINT}" }\n')


@pytest.mark.parametrize("endpoint", ["https://eu2.contabostorage.com/my-bucket", "http://127.0.0.1:9555/qax-s3path",
                                      "http://127.0.0.1:9555/qax-s3path/", "https://h?bucket=qax-s3path",
                                      "https://h/#qax-s3path", "https://h//"])
def test_an_endpoint_with_a_path_is_refused_without_echoing_it(tmp_path, endpoint):
    (tmp_path / "reconcile.yaml").write_text(ENDPOINT_SPEC)
    with pytest.raises(SpecErrors) as info:
        load_spec(tmp_path / "reconcile.yaml", {"S3_ENDPOINT": endpoint})
    [error] = info.value.errors
    assert error.location.path == "backup.s3.endpoint" and "path" in error.message
    assert error.hint.endswith("the endpoint is the server only (https://host); put the bucket in backup.s3.bucket "
                               "(Contabo shows https://host/bucket)")
    assert "${env:S3_ENDPOINT}" in error.message and "S3_ENDPOINT" in error.hint.split(";")[0]
    assert "qax-s3path" not in f"{error}\n{error!r}\n{error.as_dict()}" and "contabostorage" not in str(error)
    assert endpoint_problem(endpoint)  # the S3 store refuses it too, should a spec bypass validation


@pytest.mark.parametrize("endpoint", ["https://eu2.contabostorage.com", "http://127.0.0.1:9555/", ""])
def test_an_endpoint_without_a_path_loads(tmp_path, endpoint):
    (tmp_path / "reconcile.yaml").write_text(ENDPOINT_SPEC)
    s3 = load_spec(tmp_path / "reconcile.yaml", {"S3_ENDPOINT": endpoint}).spec.backup.s3
    assert s3.endpoint == (endpoint or None)
