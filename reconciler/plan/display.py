"""What a plan may show of a config value: field-level diffs with secrets kept out.

Every ``env`` value and every interpolated spec value is a secret for display (issue 2,
section 2). A field's new side is shown with the loader's display text, in which each
interpolated part reads ``(sensitive)``. The old side comes from the container's config
label, which holds resolved values (its format is fixed: changing it would recreate every
deployed container). Which of its elements were interpolated is in a label of its own
(``sensitive_elements``, written since 2026-11-29): those read ``(sensitive)`` whatever the new
spec says. Otherwise an old element is shown when it equals a literal element of the new spec,
or as the new element's template when it fits one (``app:(sensitive)`` fits ``app:1``). When
the new field is all literal, an old element is shown only if it replaces a new element one
for one (``max_connections=100`` → ``max_connections=200``) and holds none of the spec's
current secrets; an element the spec dropped (``--requirepass <pw>`` removed from a command)
may have been a secret, so it reads ``(sensitive)`` like every other old element that cannot
be shown. A container made before the label was written has only these rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from difflib import SequenceMatcher

from reconciler.operate.redact import (
    MIN_LENGTH,
    NAMES_AND_PLACES,
    SECRET_NAME,
    command_secrets,
    mask_flag_values,
    secret_flag_values,
    url_passwords,
)
from reconciler.plan.actions import Change
from reconciler.spec.interpolate import interpolated_values
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import network_name, normalised_config

SENSITIVE = "(sensitive)"
NONE = "(none)"
FIELD_ORDER = ("image", "command", "entrypoint", "env", "volumes", "networks", "ports", "restart",
               "user", "mem_limit", "labels")
_KEYED = frozenset({"env", "labels"})
_LISTS = frozenset({"command", "entrypoint"})
_SCALARS = ("image", "restart", "user", "mem_limit")
_MISSING = object()


def changed_fields(old: dict, new: dict) -> list[str]:
    """Dotted names of the fields that differ: ``env.LOG_LEVEL``, ``ports``, ``image``."""
    from deepdiff import DeepDiff  # only when a config changed: most plans never need it

    fields: set[str] = set()
    for report in DeepDiff(old, new, view="tree").values():
        for level in report:
            path = level.path(output_format="list")
            if not path:
                continue
            top = str(path[0])
            fields.add(f"{top}.{path[1]}" if top in _KEYED and len(path) > 1 else top)
    return sorted(fields, key=_field_rank)


def _field_rank(name: str) -> tuple[int, str]:
    top = name.split(".", 1)[0]
    return (FIELD_ORDER.index(top) if top in FIELD_ORDER else len(FIELD_ORDER), name)


def short_id(image_id: str) -> str:
    """``sha256:1111aaaa``: enough to tell two images apart, and not a secret."""
    if not image_id:
        return "(unknown)"
    algo, sep, digest = image_id.partition(":")
    return f"{algo}:{digest[:8]}" if sep else image_id[:12]


class Views:
    """Display rules for one service's config fields, knowing which parts were interpolated."""

    def __init__(self, loaded: LoadedSpec, service: str,
                 old_sensitive: Mapping[str, Collection[int]] | None = None) -> None:
        self.loaded = loaded
        self.service = service
        self.old_sensitive = old_sensitive or {}
        """The live container's ``sensitive_elements``: old elements that were interpolated."""
        self._config: dict | None = None
        self._secrets: list[str] | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = normalised_config(self.loaded.spec, self.service)
        return self._config

    def engine_name(self, logical: str) -> str:
        """``project_name``. The project is the stack's identity, printed in every plan header
        and container name, so it is shown even when interpolated (the lab picks it per run)."""
        return f"{self.loaded.spec.project}_{logical}"

    def change(self, name: str, old: dict, new: dict) -> Change:
        return Change(name, self.before_text(name, _lookup(old, name)), self.after_text(name, new))

    def after_text(self, name: str, config: dict) -> str:
        """The new side of a field: literal parts as written, interpolated parts hidden."""
        value = _lookup(config, name)
        if name.startswith("env."):
            return NONE if value is _MISSING else SENSITIVE
        hidden = self._hidden(name)
        return self._scrubbed(_join(name, _masked(name, [hidden.get(e, e) for e in _elements(name, value)])))

    def before_text(self, name: str, value: object) -> str:
        """The old side of a field, from the container's label (see the module docstring)."""
        if name.startswith("env."):
            return NONE if value is _MISSING else SENSITIVE
        hidden = self._hidden(name)
        new = _elements(name, _lookup(self.config, name))
        literal = set(new) - set(hidden)
        old = _elements(name, value)
        replacing = set() if hidden else _replacing(name, old, new)
        was_hidden = set(self.old_sensitive.get(name, ()))
        if name == "networks" and not hidden and not was_hidden:  # QA: "(sensitive), (sensitive) → p_edge"
            return self._scrubbed(_join(name, old))  # names of declared networks: keys, which are never interpolated
        shown = []
        for index, element in enumerate(old):
            if index in was_hidden:
                shown.append(_fitting_template(element, hidden.values()))
            elif element in hidden:
                shown.append(hidden[element])
            elif element in literal:
                shown.append(element)
            elif hidden:
                shown.append(_fitting_template(element, hidden.values()))
            elif index in replacing and not self._holds_secret(element):
                shown.append(element)
            else:
                shown.append(SENSITIVE)
        if name in _LISTS:  # the value of a secret flag, whatever the rules above made of it
            shown = [mask_flag_values([text], SENSITIVE)[0] if text == element else text
                     for text, element in zip(shown, old, strict=True)]
            for index, (prefix, _) in secret_flag_values(old).items():
                shown[index] = prefix + SENSITIVE
        return self._scrubbed(_join(name, shown))

    def scrubbed(self, text: str) -> str:
        """``text`` with every secret of the spec hidden (for causes built from live values)."""
        return self._scrubbed(text)

    def _scrubbed(self, text: str) -> str:
        """``text`` with any secret of the spec in it hidden: a value shown as it resolves (an
        image tag, a port) may still take a secret's variable (``app:${env:TOKEN}``)."""
        for secret in self.secrets:
            text = text.replace(secret, SENSITIVE)
        return text

    def _holds_secret(self, element: str) -> bool:
        """Whether an old element contains a secret of the current spec, in any field of any
        service (a secret often moves: from a command flag to an env var): a part it
        interpolates, a secret flag's value, an env value named like a secret, a URL's password."""
        return any(secret in element for secret in self.secrets)

    @property
    def secrets(self) -> list[str]:
        """The spec's secrets (see ``_holds_secret``), longest first, read once."""
        if self._secrets is None:
            found = {v for v in _spec_secrets(self.loaded) if len(v) >= MIN_LENGTH}
            self._secrets = sorted(found, key=lambda v: (-len(v), v))
        return self._secrets

    def _hidden(self, name: str) -> dict[str, str]:
        """Raw element text → display text, for the new spec's elements that differ in display."""
        pairs = list(self._pairs(name))
        return {raw: shown for raw, shown in pairs if raw != shown}

    def _pairs(self, name: str) -> Iterable[tuple[str, str]]:
        spec = self.loaded.spec
        service = spec.services[self.service]
        base = ("services", self.service)
        top, _, key = name.partition(".")
        if top in _SCALARS and getattr(service, top) is not None:
            value = str(getattr(service, top))
            yield value, self.loaded.shown((*base, top), value)
        elif top in _LISTS:
            for index, item in enumerate(getattr(service, top) or ()):
                yield item, self.loaded.shown((*base, top, index), item)
        elif top == "labels":
            for label, value in service.labels.items():
                if not key or key == label:
                    shown = self.loaded.shown((*base, "labels", label), value)
                    yield (value, shown) if key else (f"{label}={value}", f"{label}={shown}")
        elif top == "ports":
            for index, port in enumerate(service.ports):
                shown = self.loaded.shown((*base, "ports", index), port)
                yield str(port), shown if "/" in shown else f"{shown}/{port.protocol}"
        elif top == "networks":
            for index, net in enumerate(service.networks):
                shown = self.loaded.shown((*base, "networks", index), net)
                yield network_name(spec, net), self.engine_name(shown)
        elif top == "volumes":
            for index, entry in enumerate(self.config["volumes"]):
                yield volume_text(entry), self._volume_shown(index, entry)

    def _volume_shown(self, index: int, entry: dict) -> str:
        mount = self.loaded.spec.services[self.service].volumes[index]
        path = ("services", self.service, "volumes", index)
        if path in self.loaded.display:
            head = self.loaded.display[path]
        else:
            head = str(mount)  # logical volume name: the engine volume may be a generation
        return head + _definition_text(entry.get("definition"), ("volumes", mount.source), self.loaded)


def volume_text(entry: object) -> str:
    """``source:/target[:ro]`` plus how the volume is made: ``(bind /srv/pg)``."""
    if not isinstance(entry, dict):
        return json.dumps(entry, sort_keys=True)
    head = f"{entry.get('source')}:{entry.get('target')}" + (":ro" if entry.get("read_only") else "")
    return head + _definition_text(entry.get("definition"), None, None)


def _definition_text(definition: object, path: tuple | None, loaded: LoadedSpec | None) -> str:
    if not isinstance(definition, dict):
        return ""

    def shown(key: tuple, value: object) -> str:
        return loaded.shown((*path, *key), value) if loaded and path else str(value)

    parts = []
    if definition.get("bind"):
        parts.append(f"bind {shown(('bind',), definition['bind'])}")
    if definition.get("driver") not in (None, "local"):
        parts.append(f"driver {shown(('driver',), definition['driver'])}")
    opts = definition.get("driver_opts") or {}
    if isinstance(opts, dict) and opts:
        pairs = (f"{k}={shown(('driver_opts', k), v)}" for k, v in sorted(opts.items()))
        parts.append("opts " + ",".join(pairs))
    return f" ({'; '.join(parts)})" if parts else ""


def _lookup(config: object, name: str) -> object:
    if not isinstance(config, dict):
        return _MISSING
    top, _, key = name.partition(".")
    value = config.get(top, _MISSING)
    if key:
        return value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
    return value


def _elements(name: str, value: object) -> list[str]:
    """A field's value as display elements: one per list item or mapping entry."""
    if value is _MISSING or value is None:
        return []
    if isinstance(value, list):
        return [volume_text(v) if name == "volumes" else _scalar(v) for v in value]
    if isinstance(value, dict):
        if name == "env":
            return [f"{k}={SENSITIVE}" for k in sorted(value)]
        return [f"{k}={_scalar(v)}" for k, v in sorted(value.items())]
    return [_scalar(value)]


def _masked(name: str, elements: list[str]) -> list[str]:
    """A command line as shown, with each secret flag's value hidden even when written literally
    (``--requirepass=hunter22`` → ``--requirepass=(sensitive)``)."""
    return mask_flag_values(elements, SENSITIVE) if name in _LISTS else elements


def _spec_secrets(loaded: LoadedSpec) -> list[str]:
    """As ``Redactor.for_spec``: the project's name and folders are not secrets, interpolated or
    not (QA: "networks: (none) → (sensitive)_backend" for a project set by ``${env:…}``)."""
    values = list(interpolated_values(loaded, skip=NAMES_AND_PLACES))
    for name, service in loaded.spec.services.items():
        values += command_secrets(loaded, name)
        for key, secret in service.env.items():
            value = secret.get_secret_value()
            values += [*url_passwords(value), *([value] if SECRET_NAME.search(key) else [])]
    return values


def _scalar(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _join(name: str, elements: list[str]) -> str:
    if not elements:
        return NONE
    if name.split(".", 1)[0] in _LISTS:
        return "[" + ", ".join(json.dumps(e, ensure_ascii=False) for e in elements) + "]"
    return ", ".join(elements)


def _replacing(name: str, old: list[str], new: list[str]) -> set[int]:
    """Indexes of the old elements that a new element replaces one for one: a scalar field's
    one value (``restart``, ``mem_limit``: always there, if only as a default), a label the
    spec still sets, or a same-length run of a list's diff. Old elements the new spec dropped
    (a label key, list items) are not among them."""
    if name.split(".", 1)[0] in _SCALARS:
        return set(range(len(old)))
    if "." in name:
        return set(range(len(old))) if new else set()
    if name == "labels":
        keys = {element.split("=", 1)[0] for element in new}
        return {i for i, element in enumerate(old) if element.split("=", 1)[0] in keys}
    replacing: set[int] = set()
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:
            replacing.update(range(i1, i2))
    return replacing


def sensitive_elements(loaded: LoadedSpec, service: str) -> dict[str, list[int]]:
    """Per display field (``labels.KEY`` too), the indexes of the elements that hold an
    interpolated part: written on the container (``LABEL_SENSITIVE``) so that a later plan
    hides them on the old side even once the spec writes that field without interpolation.
    Indexes, not values: the label says where secrets were, never what they were."""
    views = Views(loaded, service)
    names = [n for n in FIELD_ORDER if n != "env"]
    names += [f"labels.{key}" for key in sorted(views.config.get("labels") or {})]
    out = {}
    for name in names:
        hidden = views._hidden(name)
        indexes = [i for i, e in enumerate(_elements(name, _lookup(views.config, name))) if e in hidden]
        if indexes:
            out[name] = indexes
    return out


def _fitting_template(element: str, templates: Iterable[str]) -> str:
    """The first display template whose literal parts fit ``element``, else ``(sensitive)``."""
    for template in templates:
        pattern = ".*".join(re.escape(part) for part in template.split(SENSITIVE))
        if re.fullmatch(pattern, element, flags=re.DOTALL):
            return template
    return SENSITIVE
