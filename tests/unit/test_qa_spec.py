"""QA of the spec as people write it by hand (often ported from a docker-compose.yml), and of what
`validate`, `schema` and `plan` say about it: each case here was found wrong and fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from reconciler.apply import builders
from reconciler.errors import SpecError, SpecErrors
from reconciler.pipeline import snapshot
from reconciler.spec.load import load_spec
from reconciler.spec.schema import schema

VALIDATOR = Draft202012Validator(schema())
HEAD = "version: 1\nproject: qas\nvolumes: {data: {}}\nservices:\n"


def as_an_editor_reads(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)  # YAML 1.2, plain data


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reconcile.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[SpecError]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text), {})
    return info.value.errors if isinstance(info.value, SpecErrors) else [info.value]


def only(tmp_path: Path, text: str) -> SpecError:
    [error] = problems(tmp_path, text)
    return error


def test_a_host_port_taken_by_a_third_binding_is_a_clash(tmp_path):
    """Only the first binding of a port was remembered: a:127.0.0.1, b:127.0.0.2, c:127.0.0.1 passed."""
    error = only(tmp_path, HEAD + "  a: {image: x, ports: ['127.0.0.1:80:80']}\n"
                                  "  b: {image: x, ports: ['127.0.0.2:80:80']}\n"
                                  "  c: {image: x, ports: ['127.0.0.1:80:80']}\n")
    assert error.ref == "spec.port-clash" and "services a and c" in error.message
    assert str(error.location).endswith(":7:25 (services.c.ports[0])")


def test_every_bad_name_is_reported_at_its_own_key(tmp_path):
    """A bad service name was reported at the first service's line, by the mapping's path, with
    the top-level keys as its hint; and only the first bad name."""
    errors = problems(tmp_path, HEAD + "  api: {image: x}\n  Web: {image: x}\n  -db: {image: x}\n")
    assert [str(e.location).split(":", 1)[1] for e in errors] == ["6:3 (services.Web)", "7:3 (services.-db)"]
    assert errors[0].hint.startswith("rename it, e.g. 'web'") and "backup" not in errors[0].hint


@pytest.mark.parametrize("image", ["Nginx:Latest", "nginx latest", "nginx:", "app:1:2"])
def test_an_image_reference_docker_refuses_is_refused_by_validate_and_the_schema(tmp_path, image):
    """validate said valid; plan then failed with the engine's "invalid reference format" and no line."""
    text = HEAD + f"  api: {{image: '{image}'}}\n"
    error = only(tmp_path, text)
    assert error.message == "invalid value: not an image reference Docker takes" and "lower case" in error.hint
    assert str(error.location).endswith(":5:16 (services.api.image)")
    assert not VALIDATOR.is_valid(as_an_editor_reads(text))


@pytest.mark.parametrize("image", ["nginx", "docker.dragonflydb.io/dragonflydb/dragonfly:v1.21.0",
                                   "localhost:5000/a__b/c-d:V1.0_rc", "nginx@sha256:" + "0" * 64])
def test_image_references_docker_takes_pass_both(tmp_path, image):
    text = HEAD + f"  api: {{image: '{image}', deploy: {{proxy_image: '{image}'}}}}\n"
    assert load_spec(write(tmp_path, text), {}).spec.services["api"].image == image
    assert VALIDATOR.is_valid(as_an_editor_reads(text))


def test_an_image_refused_after_interpolation_names_the_reference_not_the_value(tmp_path):
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path, HEAD + "  api: {image: 'app:${env:TAG}'}\n"), {"TAG": "Not Valid"})
    [error] = info.value.errors
    assert "${env:TAG}" in error.message and "Not Valid" not in str(error)


@pytest.mark.parametrize("field,meant", [
    ("restart: alway", "always"), ("kind: postgresql", "postgres"), ("deploy: {strategy: bluegreen}", "blue-green"),
])
def test_a_mistyped_choice_suggests_the_choice(tmp_path, field, meant):
    """The hint listed the keys beside the field (backup, command, …), which fix nothing."""
    error = only(tmp_path, HEAD + f"  api:\n    image: x\n    {field}\n")
    assert error.hint.startswith(f"did you mean {meant!r}?") and "command" not in error.hint


def test_a_compose_condition_suggests_ours(tmp_path):
    error = only(tmp_path, HEAD + "  a: {image: x, depends_on: {b: service_healthy}}\n  b: {image: x}\n")
    assert error.hint.startswith("did you mean 'healthy'?")


def test_compose_environment_suggests_env(tmp_path):
    assert only(tmp_path, HEAD + "  api: {image: x, environment: {A: b}}\n").hint == "did you mean 'env'?"


def test_two_stateful_services_writing_one_volume_are_refused(tmp_path):
    error = only(tmp_path, HEAD + "  a: {image: x, stateful: true, volumes: ['data:/d']}\n"
                                  "  b: {image: x, stateful: true, volumes: ['data:/e']}\n")
    assert error.ref == "spec.shared-data" and "a and b" in error.message
    assert str(error.location).endswith("(services.b.volumes[0])")


def test_a_bound_volume_and_its_folder_are_the_same_data_and_read_only_is_allowed(tmp_path):
    bound = HEAD.replace("data: {}", "data: {bind: /srv/pg/}")
    error = only(tmp_path, bound + "  a: {image: x, stateful: true, volumes: ['data:/d']}\n"
                                   "  b: {image: x, stateful: true, volumes: ['/srv/pg:/e']}\n")
    assert error.ref == "spec.shared-data" and "/srv/pg" not in error.message  # a path may be interpolated
    load_spec(write(tmp_path, HEAD + "  a: {image: x, stateful: true, volumes: ['data:/d']}\n"
                                     "  b: {image: x, stateful: true, volumes: ['data:/e:ro', '/srv/b:/b']}\n"), {})


def test_a_mistyped_profile_on_the_command_line_suggests_one(tmp_path):
    path = write(tmp_path, HEAD + "  a: {image: x, profile: app}\n  b: {image: x, profile: infrastructure}\n")
    with pytest.raises(SpecError) as info:
        snapshot(path, ["apps", "infra"])  # refused before the engine is read
    assert info.value.hint.startswith("did you mean 'app', 'infrastructure'?")


def test_a_compose_port_range_says_how_to_write_it(tmp_path):
    error = only(tmp_path, HEAD + "  api: {image: x, ports: ['8080-8081:80-81']}\n")
    assert "one entry per port" in error.hint


@pytest.mark.parametrize("port", ["true", "~", "80.5", ".inf"])
def test_a_port_that_is_no_number_or_text_says_so(tmp_path, port):
    """It read "Input should be a valid dictionary or instance of Port"."""
    error = only(tmp_path, HEAD + f"  api: {{image: x, ports: [{port}]}}\n")
    assert error.message == "invalid value: a port is written as a number or as text"


@pytest.mark.parametrize("memory", ["512M", "1.5g", "1gb", "0"])
def test_a_memory_limit_in_another_form_says_what_to_write(tmp_path, memory):
    error = only(tmp_path, HEAD + f"  api: {{image: x, mem_limit: {memory}}}\n")
    assert error.message == "invalid value: mem_limit is a size such as 512m or 1g" and "512M" in error.hint


def test_a_memory_limit_below_what_docker_takes_is_refused(tmp_path):
    error = only(tmp_path, HEAD + "  api: {image: x, mem_limit: 1k}\n")
    assert "smaller than Docker takes" in error.message
    load_spec(write(tmp_path, HEAD + "  api: {image: x, mem_limit: '0'}\n  b: {image: x, mem_limit: 6m}\n"), {})


def test_a_tab_indent_says_to_use_spaces(tmp_path):
    error = only(tmp_path, HEAD + "\tapi: {image: x}\n")
    assert error.hint.startswith("indent with spaces") and str(error.location).endswith(":5:1")


def test_a_yaml_1_1_directive_is_refused(tmp_path):
    """It switched the reading to YAML 1.1: ports: [22:22] became port 1342, protect: yes true."""
    error = only(tmp_path, "# ported\n%YAML 1.1\n---\n" + HEAD + "  api: {image: x, ports: [22:22]}\n")
    assert "%YAML 1.1" in error.message and str(error.location).endswith(":2:1")


@pytest.mark.parametrize("text,words", [("", "is empty"), ("# nothing yet\n", "is empty"), ("- a\n", "a list")])
def test_a_file_that_is_no_mapping_says_what_it_holds(tmp_path, text, words):
    error = only(tmp_path, text)
    assert words in error.message and str(error.location).endswith(":1:1")


@pytest.mark.parametrize("field,words", [
    ("env: [A=1, B=2]", "env is a mapping"), ("command: npm start", "list of arguments"),
    ("entrypoint: /bin/sh", "list of arguments"),
])
def test_compose_line_forms_say_how_to_write_them(tmp_path, field, words):
    error = only(tmp_path, HEAD + f"  api:\n    image: x\n    {field}\n")
    assert words in error.message and "A=1" not in str(error) and "npm start" not in error.message


def test_env_as_a_list_beside_an_env_file_is_not_dropped(tmp_path):
    """With env_file, an env that was not a mapping was replaced by the file's values: validate said valid."""
    (tmp_path / ".env").write_text("A=1\n")
    error = only(tmp_path, HEAD + "  api:\n    image: x\n    env_file: .env\n    env: [B=2]\n")
    assert str(error.location).endswith("(services.api.env)")


def test_a_mistyped_dependency_suggests_the_service(tmp_path):
    error = only(tmp_path, HEAD + "  postgres: {image: x}\n  api: {image: x, depends_on: [postgress]}\n")
    assert error.hint.startswith("did you mean 'postgres'?")


@pytest.mark.parametrize("keys,name", [("1: a\n      '1': b", "1"), ("true: a\n      'true': b", "true")])
def test_two_keys_that_are_one_name_are_a_duplicate_not_dropped(tmp_path, keys, name):
    """``{1: a, '1': b}`` are two keys to YAML but one name here: the first was silently dropped."""
    error = only(tmp_path, HEAD + f"  api:\n    image: x\n    labels:\n      {keys}\n")
    assert error.message.startswith("duplicate key")
    assert str(error.location).endswith(f":9:7 (services.api.labels.{name})")


def test_a_compose_extension_key_says_where_an_anchor_can_go(tmp_path):
    error = only(tmp_path, "x-base: &base {image: x}\n" + HEAD + "  api: {<<: *base}\n")
    assert error.ref == "spec.unknown-key" and "<<: *name" in error.hint


def test_a_project_or_profile_name_says_what_to_write_and_hides_an_interpolated_one(tmp_path):
    """It read "String should match pattern '^[a-z0-9][a-z0-9_.-]*$'" with a generic hint."""
    errors = problems(tmp_path, HEAD.replace("project: qas", "project: Shop") + "  api: {image: x, profile: App}\n")
    assert [e.hint.split(";")[0] for e in errors] == ["rename it, e.g. 'shop'", "rename it, e.g. 'app'"]
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path, HEAD.replace("qas", "'${env:P}'") + "  api: {image: x}\n"), {"P": "Hidden"})
    assert "hidden" not in str(info.value).lower()


def test_two_mounts_at_one_path_are_refused(tmp_path):
    """Docker refused the container at apply ("Duplicate mount point"); validate said valid."""
    error = only(tmp_path, HEAD + "  a: {image: x, volumes: ['data:/d', '/srv/x:/d/']}\n")
    assert error.ref == "spec.mount-twice" and str(error.location).endswith("(services.a.volumes[1])")


def test_one_volume_mounted_at_two_paths_keeps_both(tmp_path):
    """The container's binds were keyed by source: the first of the two mounts was silently dropped."""
    loaded = load_spec(write(tmp_path, HEAD + "  a: {image: x, volumes: ['data:/d', 'data:/e:ro']}\n"), {})
    binds = builders.container_args(loaded, "a", "sha256:x")["host_config"]["binds"]
    assert binds == ["qas_data:/d:rw", "qas_data:/e:ro"]


def test_a_network_joined_twice_is_refused(tmp_path):
    """Apply's second join of the network was refused by the engine; validate said valid."""
    error = only(tmp_path, HEAD + "  a: {image: x, networks: [backend, backend]}\nnetworks: {backend: {}}\n")
    assert error.ref == "spec.network-twice" and str(error.location).endswith("(services.a.networks[1])")
