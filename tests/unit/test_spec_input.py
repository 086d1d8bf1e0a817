"""Hostile or mistaken spec input (found by QA): each is a spec error with file:line:col, the
field path and a hint, never a traceback, a hang, a silent rewrite or a wider exposure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ruamel.yaml.constructor import ConstructorError

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.durations import MAX_SECONDS, parse_duration
from reconciler.spec.interpolate import InterpolationError, interpolate
from reconciler.spec.load import load_spec
from reconciler.spec.yamlread import MAX_DEPTH, ShapeError, check_shape, yaml_reader

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
version: 1
project: demo
services:
  db:
    image: postgres:16
"""


def spec_with(tmp_path: Path, extra: str, head: str = "") -> Path:
    """``SPEC`` with ``extra`` (indented as service keys, from line 6) and ``head`` (top-level
    keys, between project and services)."""
    text = SPEC.replace("services:\n", head + "services:\n") + textwrap.indent(textwrap.dedent(extra), "    ")
    path = tmp_path / "reconcile.yaml"
    path.write_text(text)
    return path


def problems(path: Path, environ: dict | None = None) -> list[SpecError]:
    with pytest.raises(SpecError) as info:
        load_spec(path, environ or {})
    return info.value.errors if isinstance(info.value, SpecErrors) else [info.value]


def only(path: Path, environ: dict | None = None) -> SpecError:
    found = problems(path, environ)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


# -- 1. a host IP that is not an address would make Docker publish on every interface ----------

@pytest.mark.parametrize("port", ["127.0.0.256:37998:80", "999.0.0.1:37998:80", "127.000.0.1:80:80",
                                  "[1::2::3]:80:80"])
def test_host_ip_must_be_an_address(tmp_path, port):
    error = only(spec_with(tmp_path, f'ports: ["{port}"]'))
    assert error.ref == "spec.invalid" and "host IP is not a valid IPv" in error.message
    assert str(error.location).endswith("reconcile.yaml:6:13 (services.db.ports[0])")
    assert "127.0.0.1" in error.hint and port.split(":")[0] not in str(error)


def test_valid_host_ips_still_load(tmp_path):
    ports = load_spec(spec_with(tmp_path, 'ports: ["0.0.0.0:80:80", "[::1]:81:81", "10.1.2.3:82:82"]'),
                      {}).spec.services["db"].ports
    assert [p.host_ip for p in ports] == ["0.0.0.0", "::1", "10.1.2.3"]


# -- 2. tags: refused where they stand, and never built into objects ---------------------------

@pytest.mark.parametrize("value", ["!custom [a, b]", "!!python/tuple [a, b]", "!!str 0123", "! text",
                                   '!!python/object/apply:os.system ["touch {marker}"]',
                                   "!!python/object/apply:os.system\n  args: ['touch {marker}']"])
def test_yaml_tags_are_refused_at_their_place(tmp_path, value):
    marker = tmp_path / "ran"
    error = only(spec_with(tmp_path, "command: " + value.replace("{marker}", str(marker))))
    assert error.ref == "spec.yaml" and "tag" in error.message
    assert str(error.location).endswith("reconcile.yaml:6:14 (services.db.command)")
    assert "quote" in error.hint
    assert not marker.exists()


@pytest.mark.parametrize("fast", [True, False])
def test_no_tag_builds_an_object_even_unchecked(tmp_path, fast):
    """The constructors refuse tags themselves, should ``check_shape`` ever be skipped."""
    marker = tmp_path / "ran"
    for text in (f'a: !!python/object/apply:os.system ["touch {marker}"]', "a: !custom [x]",
                 "a: !!python/name:os.system ''"):
        with pytest.raises(ConstructorError):
            yaml_reader(fast).load(text)
    assert not marker.exists()


# -- 3. malformed references are errors, not literal text -------------------------------------

@pytest.mark.parametrize("image,words", [
    ("${env:A:-${env:B}}", "nested reference"),
    ("x${env:A:-$${B}}", "nested reference"),
    ("${env:B", "unclosed reference"),
    ("app:${env:TAG:-1", "unclosed reference"),
])
def test_malformed_references_are_errors(tmp_path, image, words):
    path = spec_with(tmp_path, "").with_name("r.yaml")
    path.write_text(SPEC.replace("postgres:16", f'"{image}"'))
    error = only(path, {"A": "a", "B": "b", "TAG": "2"})
    assert error.ref == "spec.interpolation" and words in error.message
    assert str(error.location).endswith("r.yaml:5:12 (services.db.image)")
    assert "nest" in error.hint or "close it" in error.hint


@pytest.mark.parametrize("text,value", [
    ("$${HOME}", "${HOME}"), ("a$b", "a$b"), ("$", "$"), ("cost: 5$", "cost: 5$"), ("$$", "$$"),
    ("a}b", "a}b"), ("${env:A}-${env:A:-x}", "a-a"),
])
def test_escapes_and_lone_dollars_stay(text, value):
    assert interpolate(text, {"A": "a"}, Path(".")).value == value


# -- 4. ${env:X:-default} takes the default when X is unset or empty --------------------------

@pytest.mark.parametrize("environ,value", [({}, "dflt"), ({"X": ""}, "dflt"), ({"X": "set"}, "set")])
def test_default_when_unset_or_empty(environ, value):
    assert interpolate("${env:X:-dflt}", environ, Path(".")).value == value


def test_empty_without_default_is_empty_and_unset_is_an_error():
    assert interpolate("<${env:X}>", {"X": ""}, Path(".")).value == "<>"
    with pytest.raises(InterpolationError):
        interpolate("${env:X}", {}, Path("."))


# -- 5. env values reach the container exactly as written -------------------------------------

ENV_AS_WRITTEN = {"PIN": "0123456", "ZIP": "00501", "FLT": "1.10", "EXP": "1e3", "HEX": "0x10",
                  "OCT": "0o17", "UNDER": "1_000", "PGPORT": "5432", "NEG": "-0", "INF": ".inf",
                  "YES": "true", "CAPS": "True", "DAY": "2024-01-01", "TEXT": "plain"}


def env_block() -> str:
    return "env:\n" + "".join(f"  {key}: {text}\n" for key, text in ENV_AS_WRITTEN.items())


def test_env_values_are_the_written_text(tmp_path):
    env = load_spec(spec_with(tmp_path, env_block()), {}).spec.services["db"].env
    assert {key: value.get_secret_value() for key, value in env.items()} == ENV_AS_WRITTEN


def test_env_numbers_are_no_problem_on_the_positions_pass(tmp_path):
    """A spec with another error is read again by the round-trip parser: same env, no new error."""
    error = only(spec_with(tmp_path, env_block() + "kind: mysql\n"))
    assert error.location.path == "services.db.kind"


def test_numbers_elsewhere_are_still_numbers(tmp_path):
    spec = load_spec(spec_with(tmp_path, "protect: true\nports: [5432]\nhealth: {interval: 1.5}\n"
                                         "backup: {databases: [app]}\n"), {}).spec
    db = spec.services["db"]
    assert db.protect is True and db.ports[0].container == 5432 and db.health.interval == 1.5


def test_a_date_that_is_not_one_is_an_error(tmp_path):
    error = only(spec_with(tmp_path, "env: {DAY: 2024-02-30}"))
    assert error.ref == "spec.yaml" and "quote it" in error.message
    assert str(error.location).endswith("reconcile.yaml:6:16")


# -- 6. durations are finite and at most a year -----------------------------------------------

@pytest.mark.parametrize("value,words", [
    (".inf", "longer than a year"), (".nan", "not .nan"), ("-.inf", "negative"),
    ("99999999999999999999999h", "longer than a year"), ("1" + "0" * 400, "longer than a year"),
    (f"{MAX_SECONDS + 1}", "longer than a year"), ("8761h", "longer than a year"),
])
def test_durations_are_bounded(tmp_path, value, words):
    error = only(spec_with(tmp_path, f"health: {{interval: {value}}}"))
    assert error.ref == "spec.invalid" and words in error.message
    assert str(error.location).endswith("reconcile.yaml:6:24 (services.db.health.interval)")


def test_a_year_is_still_a_duration():
    assert parse_duration("8760h") == parse_duration(MAX_SECONDS) == MAX_SECONDS


# -- 7. env names Docker can pass; memory sizes Docker takes ----------------------------------

@pytest.mark.parametrize("key,path", [('""', "services.db.env."), ('"A=B"', "services.db.env.A=B"),
                                      ('"C\\0D"', "services.db.env.C\\x00D")])
def test_env_names_must_be_passable(tmp_path, key, path):
    error = only(spec_with(tmp_path, f"env: {{{key}: v}}"))
    assert error.ref == "spec.invalid" and "environment variable name" in error.message
    assert str(error.location).endswith(f"reconcile.yaml:6:11 ({path})")
    assert "DATABASE_URL" in error.hint


@pytest.mark.parametrize("size,ok", [("99999999999999999999999g", False), ("8589934592g", False),
                                     ("8589934591g", True), ('"9223372036854775807"', True),
                                     ("9223372036854775808b", False), ("512m", True)])
def test_memory_limit_fits_an_int64(tmp_path, size, ok):
    path = spec_with(tmp_path, f"mem_limit: {size}")
    if ok:
        assert load_spec(path, {}).spec.services["db"].mem_limit == size.strip('"')
        return
    error = only(path)
    assert "larger than Docker can take" in error.message and "512m" in error.hint
    assert str(error.location).endswith("reconcile.yaml:6:16 (services.db.mem_limit)")


# -- 8. ${file:} and env_file read only small regular files -----------------------------------

def unfit_sources(tmp_path: Path) -> dict[str, str]:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"a" * ((1 << 20) + 1))
    return {"/dev/null": "not a regular file", str(tmp_path / "fifo"): "not a regular file",
            str(tmp_path): "not a regular file", str(tmp_path / "big"): "larger than 1 MiB"}


@pytest.fixture
def no_hang():
    """A FIFO read would block forever: fail instead (SIGALRM interrupts the read)."""
    def stuck(*_):
        raise TimeoutError("reading the FIFO blocked")
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_file_reference_reads_only_small_regular_files(tmp_path, no_hang):
    for source, words in unfit_sources(tmp_path).items():
        path = spec_with(tmp_path, f'user: "${{file:{source}}}"')
        error = only(path)
        assert error.ref == "spec.interpolation" and words in error.message, source
        assert str(error.location).endswith("reconcile.yaml:6:11 (services.db.user)")
        assert error.hint


def test_env_file_reads_only_small_regular_files(tmp_path, no_hang):
    for source, words in unfit_sources(tmp_path).items():
        error = only(spec_with(tmp_path, f"env_file: {source}"))
        assert error.ref == "spec.env-file" and words in error.message, source
        assert str(error.location).endswith("reconcile.yaml:6:15 (services.db.env_file)")
        assert error.hint


def test_small_regular_files_still_read(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / ".env").write_text("A=1\n")
    db = load_spec(spec_with(tmp_path, 'user: "${file:secret}"\nenv_file: .env'), {}).spec.services["db"]
    assert db.user == "s3cret" and db.env["A"].get_secret_value() == "1"


# -- 9. deep nesting and alias bombs: refused quickly ------------------------------------------

def test_deep_nesting_is_refused(tmp_path):
    error = only(spec_with(tmp_path, "command: " + "[" * 300 + "]" * 300))
    assert error.ref == "spec.yaml" and f"more than {MAX_DEPTH} levels" in error.message
    assert str(error.location).startswith(f"{tmp_path / 'reconcile.yaml'}:6:")
    assert "unbalanced" in error.hint


def test_nesting_is_checked_before_the_c_parser_builds_it():
    """100 000 levels overflow the C parser's stack (a segfault): the check stops at 33."""
    started = time.monotonic()
    with pytest.raises(ShapeError) as info:
        check_shape("a: " + "[" * 100_000 + "]" * 100_000)
    assert (info.value.line, info.value.col) == (1, 4 + MAX_DEPTH - 1)
    assert time.monotonic() - started < 2


def bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    started = time.monotonic()
    error = only(spec_with(tmp_path, "", head=bomb(6)))  # 9 ** 6 = 531 441 values
    assert time.monotonic() - started < 5
    assert error.ref == "spec.yaml" and "100000 values" in error.message
    assert str(error.location).endswith("reconcile.yaml:8:10 (l5[0])")
    assert "alias" in error.hint


def test_small_aliases_still_work(tmp_path):
    head = "x-env: &env {A: 1, B: two}\n"
    path = spec_with(tmp_path, "env: *env\nkind: postgres\n", head=head)
    text = path.read_text().replace("x-env: &env {A: 1, B: two}\n", "")
    path.write_text(text.replace("env: *env", "env: &env {A: 1, B: two}") + "  api:\n    image: a\n    env: *env\n")
    spec = load_spec(path, {}).spec
    assert spec.services["api"].env["A"].get_secret_value() == "1"


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    error = only(spec_with(tmp_path, "command: &loop [a, *loop]"))
    assert error.ref == "spec.yaml" and "inside" in error.message
    assert str(error.location).endswith("reconcile.yaml:6:24 (services.db.command[1])")


def test_merge_keys_with_an_error_elsewhere_do_not_crash(tmp_path):
    """Keys merged in by ``<<`` have no position of their own (a KeyError before)."""
    path = spec_with(tmp_path, "kind: mysql\n")
    path.write_text(path.read_text().replace("    image: postgres:16\n", "    <<: {image: postgres:16}\n"))
    error = only(path)
    assert error.location.path == "services.db.kind"


# -- 10. a null volume or network is {} (Compose); a null value is placed at its key ----------

def test_null_volume_and_network_are_empty_mappings(tmp_path):
    path = spec_with(tmp_path, 'volumes: ["data:/d"]\nnetworks: [net]', head="volumes:\n  data:\nnetworks:\n  net:\n")
    spec = load_spec(path, {}).spec
    assert spec.volumes["data"].driver == "local" and spec.volumes["data"].bind is None
    assert spec.networks["net"].driver == "bridge"


def test_null_value_error_points_at_its_key(tmp_path):
    error = only(spec_with(tmp_path, "profile:\nkind: generic\n"))
    assert str(error.location).endswith("reconcile.yaml:6:5 (services.db.profile)")


# -- 11. a port published twice by one service --------------------------------------------------

def test_port_twice_in_one_service(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["8080:80", "8080:81"]'))
    assert error.message == "service db publishes host port 8080/tcp twice"
    assert str(error.location).endswith("reconcile.yaml:6:24 (services.db.ports[1])")


# -- the command line: exit 1, the error, no traceback ------------------------------------------

def test_cli_reports_a_tag_without_a_traceback(tmp_path):
    path = spec_with(tmp_path, "command: !!python/tuple [a, b]")
    env = {"PATH": "/usr/bin:/bin", "RECONCILE_NO_PREFETCH": "1", "DOCKER_HOST": "unix:///nonexistent.sock"}
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(path), "validate"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60, env=env)
    assert result.returncode == 1
    assert "reconcile.yaml:6:14 (services.db.command)" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
