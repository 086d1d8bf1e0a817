"""Which kinds of change a commit range holds (infra, app…), so CI runs only what it must.

Two halves. The pure core turns path globs into classes: ``compile_glob`` and ``classify``
know nothing of git. A thin adapter (``changed_files``, ``read_rules``) asks git for the
changed paths and reads the spec's ``changes:`` block.

Globs follow GitHub Actions' ``on.push.paths`` rules, so the same lines can be pasted into a
workflow trigger: every pattern is anchored at the repository root (``package.json`` is the
root file only; ``**/package.json`` is any of them), ``*`` and ``?`` stop at ``/``, ``**``
crosses folders (``src/**`` is everything under ``src``, ``docker/**/Dockerfile*`` includes
``docker/Dockerfile``), a trailing ``/`` means the whole folder, and ``!pattern`` takes files
back out of a class (the last matching line wins, as in ``.gitignore``).

The spec file itself always counts as infra: a changed spec is a changed stack.

Patterns and class names are matched whole (``fullmatch``, ``re.DOTALL``): a file name may hold
a newline, and ``$`` would also match before a trailing one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path, PurePosixPath

from reconciler.errors import Location, ReconcileError, SpecError

INFRA = "infra"
APP = "app"
#: What a repository shaped like the seed's (Node app, Prisma, Dockerfiles per engine) means.
DEFAULT_RULES: Mapping[str, tuple[str, ...]] = {
    INFRA: ("docker/**/Dockerfile*", "**/Dockerfile.postgres", "**/Dockerfile.redis",
            "**/Dockerfile.dragonfly", "docker-compose*.yml", "docker-compose*.yaml",
            "prisma/migrations/**"),
    APP: ("src/**", "package.json", "yarn.lock", "tsconfig.json"),
}
#: Class names become ``<name>-changed`` step outputs (the spec model applies it too).
CLASS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
CLASS_HINT = "use lower-case letters, digits, '-' or '_', e.g. infra, app, docs"
BLOCK_HINT = 'e.g. changes: { infra: ["docker/**"], app: ["src/**"] }'
NULL_SHA = re.compile(r"0{40}|0{64}")
FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
FETCH_HINT = ("fetch more history: actions/checkout with fetch-depth: 0 "
              "(or `git fetch --unshallow origin` / `git fetch origin REF`)")
GONE = "a force-push or a rebase removes the commit a push replaced"
GONE_HINT = ("if a force-push replaced it, treat the push as changing everything: "
             "--missing-base all (or a base of forty zeros)")
NAME_HINT = "check the name: a branch (origin/main), a tag or a commit SHA of this repository"


class MissingBase(StrEnum):
    """What a base commit the repository lacks means: an error, or "everything changed"."""

    FAIL = "fail"
    ALL = "all"


class ChangesError(ReconcileError):
    """Changed files cannot be listed (no git, unknown ref, shallow clone)."""

    ref = "changes"


# -- pure core --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One glob line of a class; ``negate`` for a ``!pattern`` that takes files back out."""

    pattern: str
    regex: re.Pattern[str]
    negate: bool = False


@dataclass(frozen=True)
class Classified:
    """Every changed file, the files of each class, and those no class claimed."""

    files: tuple[str, ...]
    classes: Mapping[str, tuple[str, ...]]
    unclassified: tuple[str, ...]

    def changed(self, name: str) -> bool:
        return bool(self.classes.get(name))

    def to_dict(self) -> dict:
        return {"files": list(self.files), "unclassified": list(self.unclassified),
                "classes": {name: {"changed": bool(files), "files": list(files)}
                            for name, files in self.classes.items()}}


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """A root-anchored regex for one glob (cached: the same rules run over many files)."""
    glob = pattern.strip().lstrip("/")
    if glob.endswith("/"):
        glob += "**"
    return re.compile(_translate(glob), re.DOTALL)  # used with fullmatch: no ^ or $ needed


def _translate(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "[" and (end := _class_end(glob, i)) > 0:
            out.append(_char_class(glob[i + 1:end]))
            i = end + 1
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])))
            i += 1
    return "".join(out)


def _class_end(glob: str, start: int) -> int:
    """Index of the ``]`` closing a ``[...]`` at ``start``, or -1 (then ``[`` is literal)."""
    i = start + 1
    if i < len(glob) and glob[i] in "!^":
        i += 1
    if i < len(glob) and glob[i] == "]":
        i += 1
    return glob.find("]", i)


def _char_class(body: str) -> str:
    negate = body[:1] in ("!", "^")
    body = body[1:] if negate else body
    escaped = body.replace("\\", "\\\\").replace("[", "\\[")
    return ("[^/" if negate else "[") + escaped + "]"


def make_rules(patterns: Iterable[str]) -> tuple[Rule, ...]:
    rules = []
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        if pattern.strip():
            rules.append(Rule(raw, compile_glob(pattern), negate))
    return tuple(rules)


def matches(path: str, rules: Sequence[Rule]) -> bool:
    """Last matching rule wins, so ``!`` lines only need to follow what they carve out of."""
    hit = False
    for rule in rules:
        if rule.regex.fullmatch(path):
            hit = not rule.negate
    return hit


def effective_rules(configured: Mapping[str, Sequence[str]], spec_path: str | None
                    ) -> dict[str, tuple[Rule, ...]]:
    """The spec's classes, or the defaults; ``infra`` and ``app`` always exist for CI outputs."""
    source = configured or DEFAULT_RULES
    patterns = {INFRA: (), APP: (), **{name: tuple(p) for name, p in source.items()}}
    rules = {name: make_rules(lines) for name, lines in patterns.items()}
    if spec_path:  # last, so no ``!`` line can take the spec back out
        rules[INFRA] += (Rule(spec_path, re.compile(re.escape(spec_path))),)
    return rules


def classify(files: Iterable[str], rules: Mapping[str, Sequence[Rule]]) -> Classified:
    """Sort changed paths (repo-relative, ``/``-separated) into every class they match."""
    ordered = tuple(dict.fromkeys(files))
    classes = {name: tuple(f for f in ordered if matches(f, lines)) for name, lines in rules.items()}
    claimed = {f for files_of in classes.values() for f in files_of}
    return Classified(ordered, classes, tuple(f for f in ordered if f not in claimed))


def check_class_name(name: str, location: Location | None = None) -> None:
    """Class names become ``<name>-changed`` step outputs, so they must be plain words (a
    newline in one would write a line of its own into ``$GITHUB_OUTPUT``)."""
    if not CLASS_NAME.fullmatch(name):
        raise SpecError(f"changes class {name!r} is not a plain name", ref="spec.changes",
                        hint=CLASS_HINT, location=location)


# -- adapters: the spec's changes block, and git ------------------------------------------------

def read_rules(spec_file: Path) -> dict[str, list[str]]:
    """Only the ``changes:`` block, uninterpolated: classifying needs no secrets or env files,
    so it also runs in a job that has neither (a pull request from a fork, a first CI step)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from reconciler.spec.encoding import NotUtf8Error, read_utf8

    try:
        data = YAML(typ="rt").load(read_utf8(spec_file))  # as load_spec parses
    except NotUtf8Error as exc:
        raise SpecError(exc.describe(f"spec file {spec_file}"), ref="spec.encoding", hint=exc.hint) from None
    except FileNotFoundError:
        raise SpecError(f"spec file {spec_file} not found", ref="spec.missing",
                        hint="pass -f FILE or set RECONCILE_FILE") from None
    except YAMLError:
        raise SpecError(f"{spec_file} is not valid YAML", ref="spec.yaml",
                        hint="run `reconcile validate` for the exact place") from None
    return _checked_block(data, spec_file)


def _checked_block(data: object, spec_file: Path) -> dict[str, list[str]]:
    """Each problem names its line, as ``validate`` does, so the fix needs no second command."""
    block = data.get("changes") if isinstance(data, dict) else None
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise _not_globs(_key_location(spec_file, data, "changes", "changes"))
    for key, patterns in block.items():
        where = _key_location(spec_file, block, key, f"changes.{_printable(str(key))}")
        check_class_name(str(key), where)
        if not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
            raise _not_globs(where)
    return {str(k): list(v) for k, v in block.items()}


def _not_globs(where: Location) -> SpecError:
    return SpecError("changes must map class names to lists of path globs", ref="spec.changes",
                     hint=BLOCK_HINT, location=where)


def _key_location(spec_file: Path, mapping: object, key: object, path: str) -> Location:
    """``file:line:col`` of ``key`` from the positions ruamel's round-trip loader keeps (none
    for a key merged in by ``<<``: then the file alone)."""
    try:
        line, col = mapping.lc.key(key)  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return Location(str(spec_file), path=path)
    return Location(str(spec_file), line + 1, col + 1, path)


def _printable(text: str) -> str:
    """A key with a newline or a NUL would split the error line (the spec loader escapes too)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise ChangesError("git is not installed", ref="changes.no-git",
                           hint="install git on the runner (apt-get install git)") from None


def repo_root(start: Path) -> Path:
    found = git(start, "rev-parse", "--show-toplevel")
    if found.returncode != 0 and "dubious ownership" in found.stderr:
        # a checkout another user made (a container job, a runner as another uid): git's own
        # words, since "not a repository, run in a checkout" would send the user the wrong way
        quoted = re.search(r"repository at '([^']*)'", found.stderr)
        top = quoted.group(1) if quoted else str(start)
        raise ChangesError(f"git refuses the repository at {top}: it is owned by another user "
                           "(git's \"dubious ownership\" check)", ref="changes.unsafe-repo",
                           hint=f"trust it for this job: git config --global --add safe.directory {top}")
    if found.returncode != 0:
        raise ChangesError(f"{start} is not inside a git repository", ref="changes.not-a-repo",
                           hint="run in a checkout (actions/checkout), or pass -f with a spec inside one")
    return Path(found.stdout.strip())


def resolve_commit(repo: Path, ref: str, role: str = "revision") -> str:
    """The full SHA of ``ref``, or an error whose advice fits why it is missing."""
    sha = commit_sha(repo, ref)
    if sha is None:
        raise unknown_commit(repo, ref, role)
    return sha


def commit_sha(repo: Path, ref: str) -> str | None:
    found = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return found.stdout.strip() if found.returncode == 0 else None


def unknown_commit(repo: Path, ref: str, role: str) -> ChangesError:
    """A shallow clone may just not have fetched it (fetch more); a full clone that lacks a full
    SHA lost it to a force-push (fetching cannot help); any other name is most likely a typo."""
    if _shallow(repo):
        return ChangesError(f"unknown git revision {ref!r} (this clone is shallow)",
                            ref="changes.unknown-ref", hint=FETCH_HINT)
    if FULL_SHA.fullmatch(ref):
        hint = GONE_HINT if role == "base" else "pass a commit of this checkout"
        return ChangesError(f"{role} {ref!r} is not in this repository's history ({GONE})",
                            ref="changes.unknown-ref", hint=hint)
    gone = "; a commit a force-push replaced is gone: pass its full SHA with --missing-base all"
    return ChangesError(f"unknown git revision {ref!r}: no branch, tag or commit of this repository",
                        ref="changes.unknown-ref", hint=NAME_HINT + (gone if role == "base" else ""))


def base_is_gone(repo: Path, base: str) -> bool:
    """A full SHA that a full clone lacks: the commit a force-push replaced. A name or a short
    SHA may be a typo, and a shallow clone may only have not fetched it: those stay errors."""
    return bool(FULL_SHA.fullmatch(base)) and commit_sha(repo, base) is None and not _shallow(repo)


def _shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def changed_files(repo: Path, base: str, head: str) -> list[str]:
    """``git diff --name-only base...head``: what ``head`` changed since it forked from ``base``.

    An all-zero ``base`` (GitHub's ``event.before`` on a new branch) means everything in ``head``.
    """
    head_sha = resolve_commit(repo, head, "head")
    if NULL_SHA.fullmatch(base):
        return _nul_split(_checked(git(repo, "ls-tree", "-r", "-z", "--name-only", head_sha)))
    base_sha = resolve_commit(repo, base, "base")
    if git(repo, "merge-base", base_sha, head_sha).returncode != 0:
        shallow = _shallow(repo)
        raise ChangesError(f"{base} and {head} share no history" + (" in this shallow clone" if shallow else ""),
                           ref="changes.no-merge-base",
                           hint=FETCH_HINT if shallow else "compare two commits of the same history")
    listed = git(repo, "diff", "--name-only", "--no-renames", "-z", f"{base_sha}...{head_sha}")
    return _nul_split(_checked(listed))


def _checked(done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise ChangesError(f"git failed: {first}", ref="changes.git", hint=FETCH_HINT)
    return done.stdout


def _nul_split(text: str) -> list[str]:
    return [name for name in text.split("\0") if name]


def spec_path_in_repo(spec_file: Path, root: Path) -> str | None:
    """The spec's path as git names it, or None when the spec lives outside the repository."""
    try:
        return PurePosixPath(spec_file.resolve().relative_to(root.resolve())).as_posix()
    except ValueError:
        return None


@dataclass(frozen=True)
class ChangeReport:
    """``base_missing``: the base commit was gone and every file of ``head`` counts as changed."""

    base: str
    head: str
    spec_path: str | None
    result: Classified
    base_missing: bool = False

    def to_dict(self) -> dict:
        return {"base": self.base, "head": self.head, "spec": self.spec_path,
                "base_missing": self.base_missing, **self.result.to_dict()}


def changes_between(spec_file: Path, base: str, head: str = "HEAD",
                    missing_base: MissingBase = MissingBase.FAIL) -> ChangeReport:
    """Everything ``reconcile changes`` needs, read from the repository holding ``spec_file``.

    With ``MissingBase.ALL`` a base that is gone takes the all-zero SHA's path: after a
    force-push nothing says what the push changed, so everything is redeployed.
    """
    configured = read_rules(spec_file)
    root = repo_root(spec_file.resolve().parent)
    spec_path = spec_path_in_repo(spec_file, root)
    gone = missing_base is MissingBase.ALL and base_is_gone(root, base)
    files = changed_files(root, "0" * 40 if gone else base, head)
    return ChangeReport(base, head, spec_path, classify(files, effective_rules(configured, spec_path)), gone)
