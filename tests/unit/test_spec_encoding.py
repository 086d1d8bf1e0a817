"""A spec, an ``env_file`` or a ``${file:…}`` source that is not UTF-8 is bad input like any
other: file and line of the first bad byte, a hint to save it as UTF-8, exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.encoding import NotUtf8Error, read_utf8
from reconciler.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = """\
version: 1
project: demo
services:
  web:
    image: nginx:1
"""


def run(spec: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "RECONCILE_NO_PREFETCH": "1", "DOCKER_HOST": "unix:///nonexistent.sock"}
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env=env)


def latin1_spec(tmp_path: Path) -> Path:
    path = tmp_path / "reconcile.yaml"
    path.write_bytes(("# the café stack\n" + SPEC).replace("\n  web:", "\n  # né\n  web:").encode("latin-1"))
    return path


@pytest.mark.parametrize(("data", "offset", "line", "col", "utf16"), [
    ("ok\n# café\n".encode("latin-1"), 8, 2, 6, ""),
    ("é ok\n# café".encode("utf-8") + b"\xe9\n", 13, 2, 7, ""),  # columns count characters
    ("version: 1\n".encode("utf-16"), 0, 1, 1, "byte-order mark"),
    ("version: é\n".encode("utf-16-le"), 18, 1, 19, "NUL bytes"),
])
def test_the_first_bad_byte_is_placed(tmp_path, data, offset, line, col, utf16):
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(NotUtf8Error) as info:
        read_utf8(path)
    error = info.value
    assert (error.offset, error.line, error.col) == (offset, line, col)
    assert utf16 in error.utf16 and bool(error.utf16) == bool(utf16)
    assert "UTF-8" in error.hint and "Save as" in error.hint


def test_a_utf8_file_reads_as_it_is(tmp_path):
    path = tmp_path / "f"
    path.write_text("# café\n", encoding="utf-8")
    assert read_utf8(path) == "# café\n"


def test_latin1_spec_is_an_error_at_its_line(tmp_path):
    path = latin1_spec(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path, {})
    error = info.value
    assert error.ref == "spec.encoding"
    assert (error.location.file, error.location.line, error.location.col) == (str(path), 1, 10)
    assert "not UTF-8" in error.message and "offset 9" in error.message
    assert "save it as UTF-8" in error.hint


def test_utf16_spec_says_it_looks_like_utf16(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_bytes(SPEC.encode("utf-16"))
    with pytest.raises(SpecError) as info:
        load_spec(path, {})
    assert "UTF-16" in info.value.message and "iconv -f UTF-16" in info.value.hint


def test_utf16_spec_without_bom_is_an_error_not_a_traceback(tmp_path):
    """ASCII in UTF-16 without a byte-order mark decodes as UTF-8 full of NULs."""
    path = tmp_path / "reconcile.yaml"
    path.write_bytes(SPEC.encode("utf-16-le"))
    with pytest.raises(SpecError) as info:
        load_spec(path, {})
    error = info.value
    assert error.ref == "spec.yaml" and "U+0000" in error.message and "UTF-16" in error.hint
    assert (error.location.line, error.location.col) == (1, 2)


def test_control_character_in_spec_is_placed(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC.replace("nginx:1", "ng\x07inx:1"))
    with pytest.raises(SpecError) as info:
        load_spec(path, {})
    assert (info.value.location.line, info.value.location.col) == (5, 14)
    assert "U+0007" in info.value.message and "^G" in info.value.hint


def test_env_file_not_utf8_is_reported_with_the_other_problems(tmp_path):
    (tmp_path / "web.env").write_bytes("# café\nSECRET=s\xe9cret\n".encode("latin-1"))
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC + "    env_file: web.env\n    imagee: x\n")
    with pytest.raises(SpecErrors) as info:
        load_spec(path, {})
    encoding = [e for e in info.value.errors if e.ref == "spec.encoding"]
    assert len(encoding) == 1
    error = encoding[0]
    assert error.location.line == 6 and error.location.path == "services.web.env_file"
    assert "env_file" in error.message and "web.env" in error.message and "line 1, column 6" in error.message
    assert "sécret" not in str(info.value) and "s\xe9cret" not in str(info.value)


def test_file_interpolation_source_not_utf8_is_an_interpolation_error(tmp_path):
    (tmp_path / "password").write_bytes(b"\xffs3cret\n")
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC + '    env: { PW: "${file:password}" }\n')
    with pytest.raises(SpecErrors) as info:
        load_spec(path, {})
    (error,) = info.value.errors
    assert error.ref == "spec.interpolation" and error.location.line == 6
    assert "${file:…}" in error.message and "not UTF-8" in error.message and "UTF-8" in error.hint
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("command", [("validate",), ("plan",), ("validate", "--json")])
def test_cli_reports_a_latin1_spec_without_a_traceback(tmp_path, command):
    path = latin1_spec(tmp_path)
    result = run(path, *command)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "UnicodeDecodeError" not in result.stderr
    if "--json" in command:
        error = json.loads(result.stdout)
        assert error["error"] == "spec.encoding" and error["location"] == f"{path}:1:10"
    else:
        assert f"{path}:1:10: the spec file is not UTF-8" in result.stderr
        assert "hint: save it as UTF-8" in result.stderr


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_cli_reports_a_bad_env_file_and_file_source(tmp_path, command):
    (tmp_path / "web.env").write_bytes("\ufeffA=1\n".encode("utf-16"))
    (tmp_path / "password").write_bytes(b"\xe9t\xe9\n")
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC + '    env_file: web.env\n    env: { PW: "${file:password}" }\n')
    result = run(path, command)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert f"{path}:6:15 (services.web.env_file): env_file" in result.stderr
    assert f"{path}:7:16 (services.web.env.PW): the ${{file:…}} source" in result.stderr
    assert result.stderr.count("save it as UTF-8") == 2
