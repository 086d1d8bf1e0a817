"""A plan for people (text, Markdown) and for machines (JSON). Pure: returns strings and dicts.

Text, like Terraform: a header, one line per action — symbol, verb, resource, cause — with a
recreate's field changes indented under it (those the cause does not already say), the
warnings, and a summary line. Symbols are plain ASCII so they survive any terminal, log or
CI page (``~`` is taken by recreate, so Terraform's update-in-place is ``^`` here):

    +  create (a service's container, a network, a volume)
    ~  recreate (replace a container; the old one is kept until the new one is healthy)
    ^  update (change a live container in place, as ``docker update`` does: its restart
       policy or memory limit; the same container, not restarted, so no backup)
    >  start (a stopped container, unchanged)
    -  remove (an orphan: its service left the spec)
    *  backup (before a recreate or removal of a stateful service)
    <  restore (the backup, into a fresh volume)
    ?  verify (the data after a stateful recreate)
    =  switch-traffic (blue-green: point the proxy at the new container, drain, stop the old)
    !  a warning (no action; apply will heal it or an operator should look), or under
       "Blocked" what makes apply refuse the whole plan (with a hint), the actions it stops
       marked "(blocked)"

``color=True`` adds rich markup tags (``[green]+[/green]``) for the CLI to print with rich;
this module does not import rich, and escapes ``[`` in causes so they cannot act as tags.

JSON (``render_json``), a stable shape (``format`` is bumped on any incompatible change)::

    {
      "format": 1,                     # plan format version
      "project": "healthcare",
      "fingerprint": "sha256:…",       # of the observed state; apply refuses a stale plan
      "spec_hash": "sha256:…",         # of the spec as apply reads it (a saved plan must match)
      "profiles": ["app"],             # selected profiles, [] = all
      "summary": {"create": 1, …},     # count per action kind (only kinds present)
      "changes": true,                 # false when the plan is empty
      "warnings": ["…"],
      "blocking": [{                   # [] unless apply would refuse this plan (exit 1), e.g.
        "resource": "api",             # a container reconcile did not make holds the name
        "ref": "plan.name-taken",      # the service's container is created under
        "message": "api: the name healthcare-api is taken by container 3f2a9c1e4b5d (…) …",
        "hint": "… docker rename … / docker rm -f …"
      }],
      "actions": [{
        "id": "recreate:postgres",     # "<kind>:<resource>", unique in a plan
        "kind": "recreate",            # create-network | create-volume | create | recreate
                                       # | update | start | remove | backup | restore
                                       # | verify | switch-traffic
        "resource": "postgres",        # service, network or volume name (or container name)
        "cause": "image postgres:15 → postgres:17",
        "changes": [{"field": "image", "before": "postgres:15", "after": "postgres:17"}],
        "depends_on": ["backup:postgres"],
        "profile": "infrastructure", "stateful": true, "protected": true,
        "fresh_volume": true, "container_id": "…"
      }],
      "meta": {…}                      # only when set by the caller
    }

Every text in it is already display-safe: env values and interpolated parts read
``(sensitive)``. ``Plan.from_dict`` reads it back.
"""

from __future__ import annotations

import re

from reconciler.plan.actions import Action, ActionKind, Plan

NO_CHANGES = "No changes. The stack matches the spec."
NO_ACTIONS = "No actions, but the stack does not match the spec: apply cannot change what is Blocked below."
BLOCKED_HEADING = "Blocked: apply refuses this plan until this is fixed:"
BLOCKED_MARK = " (blocked)"
REFUSED = "Apply would refuse this plan before changing anything (see Blocked above)."
MARKER = "<!-- reconcile-plan -->"

SYMBOLS = {
    ActionKind.CREATE_NETWORK: "+", ActionKind.CREATE_VOLUME: "+", ActionKind.CREATE: "+",
    ActionKind.RECREATE: "~", ActionKind.UPDATE: "^", ActionKind.START: ">", ActionKind.REMOVE: "-",
    ActionKind.BACKUP: "*", ActionKind.RESTORE: "<", ActionKind.VERIFY: "?",
    ActionKind.SWITCH_TRAFFIC: "=",
}
COLOURS = {"+": "green", "~": "yellow", "^": "yellow", ">": "cyan", "-": "red", "*": "blue", "<": "magenta",
           "?": "blue", "=": "cyan"}
_NOUNS = {ActionKind.CREATE_NETWORK: "network ", ActionKind.CREATE_VOLUME: "volume "}
_MARKUP = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def verb(action: Action) -> str:
    """``create`` for a network too: the resource column says what is created."""
    return "create" if action.kind in _NOUNS else action.kind.value


def resource_label(action: Action) -> str:
    return _NOUNS.get(action.kind, "") + action.resource


def summary(plan: Plan) -> str:
    """``Plan: 2 to create, 1 to recreate, 0 to remove, 1 backup.`` (update/start/restore/verify/
    switch if any)."""
    counts = plan.counts()
    created = sum(counts.get(k.value, 0) for k in (ActionKind.CREATE, ActionKind.CREATE_NETWORK,
                                                   ActionKind.CREATE_VOLUME))
    parts = [f"{created} to create", f"{counts.get('recreate', 0)} to recreate"]
    if counts.get("update"):
        parts.append(f"{counts['update']} to update in place")
    if counts.get("start"):
        parts.append(f"{counts['start']} to start")
    parts.append(f"{counts.get('remove', 0)} to remove")
    parts.append(_count(counts.get("backup", 0), "backup"))
    if counts.get("restore"):
        parts.append(_count(counts["restore"], "restore"))
    if counts.get("verify"):
        parts.append(_count(counts["verify"], "verification"))
    if switches := counts.get("switch-traffic"):
        parts.append(f"{switches} traffic switch{'' if switches == 1 else 'es'}")
    return "Plan: " + ", ".join(parts) + "."


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def header(plan: Plan) -> str:
    scope = f"profiles: {', '.join(plan.profiles)}" if plan.profiles else "all profiles"
    return f"Plan for project {plan.project} ({scope}):"


# -- text -------------------------------------------------------------------------------------

def render_text(plan: Plan, color: bool = False) -> str:
    """The plan as people read it in a terminal or a CI log."""
    esc = escape if color else _same
    lines = [_paint(esc(header(plan)), "bold", color), ""]
    if plan.empty:
        lines.append(NO_ACTIONS if plan.blocking else NO_CHANGES)
    else:
        lines.extend(_action_lines(plan, color))
    if plan.blocking:
        lines += ["", _paint(BLOCKED_HEADING, "bold red", color)]
        for blocker in plan.blocking:
            lines.append(f"  {_paint('!', 'red', color)} {esc(blocker.message)}")
            if blocker.hint:
                lines.append(f"    hint: {esc(blocker.hint)}")
    if plan.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  {_paint('!', 'yellow', color)} {esc(w)}" for w in plan.warnings]
    if not plan.empty:
        lines += ["", _paint(summary(plan), "bold", color)]
    if plan.blocking:
        lines.append(_paint(REFUSED, "bold red", color))
    return "\n".join(visible(line) for line in lines) + "\n"


def _action_lines(plan: Plan, color: bool) -> list[str]:
    esc = escape if color else _same
    verb_width = max(len(verb(a)) for a in plan.actions)
    resource_width = max(len(resource_label(a)) for a in plan.actions)
    indent = " " * (2 + 2 + verb_width + 2 + 2)
    lines = []
    for action in plan.actions:
        symbol = SYMBOLS[action.kind]
        tag = _paint(f"{symbol} {verb(action).ljust(verb_width)}", COLOURS[symbol], color)
        resource = esc(resource_label(action).ljust(resource_width))
        mark = BLOCKED_MARK if plan.blocked(action.resource) else ""
        lines.append(f"  {tag}  {resource}  {esc(action.cause)}{mark}")
        lines.extend(f"{indent}{esc(str(change))}" for change in _untold(action))
    return lines


def _untold(action: Action) -> list:
    """Field changes the cause line does not already spell out (``image a → b`` once is enough)."""
    return [c for c in action.changes if f"{c.before} → {c.after}" not in action.cause]


def _paint(text: str, style: str, color: bool) -> str:
    return f"[{style}]{text}[/{style}]" if color else text


def _same(text: str) -> str:
    return text


def visible(text: str) -> str:
    """``text`` with each control character written as an escape (``\\x1b``, ``\\n``): a
    value (a label, a command argument) holding one would otherwise colour, move or clear
    the terminal or CI log that shows the plan, or split its line in two."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def escape(text: str) -> str:
    """Make text inert under rich markup (rich's own ``escape`` rule, without importing rich)."""
    def backslash(match: re.Match[str]) -> str:
        slashes, tag = match.groups()
        return f"{slashes}{slashes}\\{tag}"

    text = _MARKUP.sub(backslash, text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


# -- markdown ---------------------------------------------------------------------------------

# GitHub refuses a comment over 65,536 characters; a plan of many services with many changed
# fields went far past it (166 kB for 40 services with 40 changed labels each).
MARKDOWN_LIMIT = 60_000
CAUSE_LIMIT = 300


def render_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment; the hidden marker lets CI find and update its own comment.

    Never longer than ``limit``: the header, summary, warnings and fingerprint always fit;
    actions and then field changes fill what is left, and what does not fit is counted,
    with where to see it all (``reconcile plan --json``).
    """
    scope = f"profiles: {', '.join(plan.profiles)}" if plan.profiles else "all profiles"
    head = [MARKER, f"### reconcile plan: {_code(plan.project)} ({scope})", ""]
    tail = []
    if plan.warnings:
        tail += ["", "**Warnings**", ""] + [f"- ⚠️ {_cell(_clip(w))}" for w in plan.warnings]
    tail += ["", f"<sub>fingerprint `{plan.fingerprint}`</sub>"]
    if plan.empty:  # a network not as the spec says blocks a plan with no action
        said = [f"**{NO_ACTIONS}**", "", *_blocked_markdown(plan)] if plan.blocking else [f"**{NO_CHANGES}**"]
        return "\n".join([*head, *said, *tail]) + "\n"
    head += [f"**{summary(plan)}**", "", *_blocked_markdown(plan),
             "| | action | resource | cause |", "|:-:|---|---|---|"]
    budget = limit - _size(head) - _size(tail) - 400  # the notes of what was left out
    rows = [f"| `{SYMBOLS[a.kind]}` | {verb(a)} | {_cell(resource_label(a))} | "
            f"{_cell(_clip(a.cause))}{BLOCKED_MARK if plan.blocked(a.resource) else ''} |" for a in plan.actions]
    shown, budget = _fit(rows, budget)
    body = rows[:shown]
    if shown < len(rows):
        body.append(f"| | | | … {len(rows) - shown} more actions: `reconcile plan --json` lists them all |")
    changes = [(a, c) for a in plan.actions for c in a.changes]
    if changes:
        lines = [f"| {_cell(a.resource)} | {_code(c.field)} | {_code(c.before)} | {_code(c.after)} |"
                 for a, c in changes]
        fitted, _ = _fit(lines, budget - 200)
        if fitted:
            body += ["", "<details>", f"<summary>Field changes ({len(lines)})</summary>", "",
                     "| resource | field | before | after |", "|---|---|---|---|", *lines[:fitted]]
            if fitted < len(lines):
                body.append(f"\n… {len(lines) - fitted} more field changes: `reconcile plan --json` "
                            "lists them all")
            body += ["", "</details>"]
    return "\n".join([*head, *body, *tail]) + "\n"


def _blocked_markdown(plan: Plan) -> list[str]:
    """What makes apply refuse the plan, above the table, so the comment never reads as a
    deploy that will go through (each clipped: the header always fits)."""
    if not plan.blocking:
        return []
    lines = [f"⛔ **{_cell(BLOCKED_HEADING)}**", ""]
    for blocker in plan.blocking:
        lines.append(f"- ❗ {_cell(_clip(blocker.message, 1000))}")
        if blocker.hint:
            lines.append(f"  <br>hint: {_cell(_clip(blocker.hint, 1000))}")
    return [*lines, ""]


def render_error_markdown(errors: list) -> str:
    """A failed plan as a pull-request comment, under the same marker: it replaces the last
    plan's comment, which would otherwise stay up as if it were still the plan (each error's
    ``file:line:col``, message and hint; the errors are the ones the CLI prints)."""
    head = [MARKER, "### reconcile plan failed", "",
            "No plan was made, so none is shown: fix what follows and push again.", ""]
    lines = []
    for error in errors:
        where = f"{_code(str(error.location))} " if getattr(error, "location", None) else ""
        lines.append(f"- ❌ {where}{_code(error.ref)}: {_cell(_clip(error.message, 1000))}")
        if error.hint:
            lines.append(f"  <br>hint: {_cell(_clip(error.hint, 1000))}")
    return "\n".join([*head, *lines]) + "\n"


def _fit(lines: list[str], budget: int) -> tuple[int, int]:
    """How many of ``lines`` fit in ``budget`` characters (newlines counted), and what is left."""
    for count, line in enumerate(lines):
        if len(line) + 1 > budget:
            return count, budget
        budget -= len(line) + 1
    return len(lines), budget


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _clip(text: str, limit: int = CAUSE_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cell(text: str) -> str:
    """Table-safe, HTML-inert and shown as it is: a cause cannot break the table, inject
    markup, or lose a character to Markdown (a backtick, ``*`` or ``_`` is escaped, not read)."""
    return "".join(_CELL_ESCAPES.get(char, char) for char in visible(text.replace("\n", " ")))


_CELL_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ",
                 **{char: "\\" + char for char in "\\`*_[]~"}}
_BACKTICKS = re.compile(r"`+")


def _code(text: str) -> str:
    """A code span that shows ``text`` exactly (CommonMark): its fence is one backtick longer
    than the longest run of backticks inside, and a space pads a value that starts or ends
    with a backtick (or with spaces at both ends, which a code span would strip). Only what
    a table cell cannot hold changes: a newline reads as a space, ``|`` is escaped."""
    body = visible(text.replace("\n", " "))
    if not body:
        return ""  # an empty code span cannot be written: an empty cell says it
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(body)), default=0) + 1)
    padded = (body[:1] == "`" or body[-1:] == "`"
              or (body[:1] == " " and body[-1:] == " " and body.strip(" ")))
    pad = " " if padded else ""
    escaped = body.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


# -- json -------------------------------------------------------------------------------------

def render_json(plan: Plan) -> dict:
    """The documented shape above; ``Plan.from_dict`` is its inverse."""
    return plan.to_dict()
