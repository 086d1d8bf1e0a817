"""How values may be written in a spec file: rules that validation and the JSON Schema share.

Editors check a spec against ``reconcile schema`` while it is written; ``reconcile validate``
must accept exactly what they accept. pydantic's lax mode would also take ``protect: "yes"``
or ``port: "8000"``, which no editor allows: here a boolean or a number is written as one.
A value that came from ``${env:…}`` or ``${file:…}`` is text until it is resolved, so it is
taken as before (``enabled: "${env:S3_ENABLED:-false}"``).

Where a rule is a regular expression, the same text is used by the validator and, through
``ecma``, by the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from reconciler.spec.interpolate import Interpolated

FROM_FILE = {"spec_file": True}  # the validation context of a spec read from a file

_HEX = "[0-9a-fA-F]{1,4}"
IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV6 = "(?:" + "|".join([  # hexadecimal forms only (no embedded IPv4, no zone), as ipaddress reads them
    f"(?:{_HEX}:){{7}}{_HEX}",
    f"(?:{_HEX}:){{1,7}}:",
    *(f"(?:{_HEX}:){{1,{left}}}(?::{_HEX}){{1,{7 - left}}}" for left in range(6, 0, -1)),
    f":(?:(?::{_HEX}){{1,7}}|:)",
]) + ")"
PORT_NUMBER = r"0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"


class Frozen(BaseModel):
    """The base of every spec model: immutable, and an unknown key is an error (a typo in a
    file is never ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


def invalid(message: str, hint: str) -> PydanticCustomError:
    """A validation error that carries its own hint (the loader shows it instead of the
    generic one). ``message`` must not hold ``{``: pydantic fills such fields from the context."""
    return PydanticCustomError("spec_invalid", message, {"hint": hint})


def ecma(pattern: str) -> str:
    """``pattern`` as a JSON Schema (ECMA 262) pattern: Python's named groups become plain ones."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def from_file(context: object) -> bool:
    """Whether values are being read from a spec file (not built by the program itself, which
    may pass what ``model_dump`` gave, such as a port as a mapping)."""
    return isinstance(context, dict) and bool(context.get("spec_file"))


def _flag(value: object) -> object:
    if isinstance(value, (bool, Interpolated)):
        return value
    raise invalid("expected true or false",
                  "write true or false without quotes (yes, no, 1 and \"true\" are not booleans here)")


def _whole(value: object) -> object:
    """A float such as 8000.0 is a whole number to JSON Schema, so it is one here too."""
    if isinstance(value, Interpolated) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise invalid("expected a whole number", "write the number without quotes (port: 8000, daily: 7)")


WHOLE = BeforeValidator(_whole)
Flag = Annotated[bool, BeforeValidator(_flag)]
Whole = Annotated[int, WHOLE]


@dataclass(frozen=True)
class OrAlso:
    """JSON Schema only: the value may also be written as ``form``, which a validator turns
    into the main one (a list of names for ``depends_on``, a number for an ``env`` value)."""

    form: dict[str, Any]

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"anyOf": [handler(schema), self.form]}
