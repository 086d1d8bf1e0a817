"""Turning boto3/botocore failures into StorageErrors that say what to do.

Why a module of its own: botocore has dozens of exception types and error codes; the
operator needs three answers (is the endpoint reachable, are the credentials right, does
the bucket exist), and the retry logic needs one (is this worth trying again). Messages
are built here from error codes, never from request data, and any text we do pass
through is scrubbed of the credentials, so a key cannot leak into a log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from boto3.exceptions import Boto3Error, S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from reconciler.errors import StorageError
from reconciler.spec.models import endpoint_problem
from reconciler.storage.base import S3_TIMEOUT_REF, StoreUnavailable

ACCESS_KEY_ENV = "S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "S3_SECRET_ACCESS_KEY"
CREDENTIALS_HINT = f"check {ACCESS_KEY_ENV} / {SECRET_KEY_ENV}"

AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
    "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed", "403",
})
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
    "TooManyRequests", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "BadGateway", "GatewayTimeout",
})
DAMAGED_CODES = frozenset({"BadDigest"})  # the body did not match its Content-MD5: damaged on the way

BotoError = (BotoCoreError, ClientError, Boto3Error)
OBJECT_READS = frozenset({"download", "look up", "check upload of"})
"""Actions of ``S3Store`` that read one object: only to them is a bare 404 a missing key. To
a listing, an upload or a delete it says the bucket (or the endpoint) is not what we think."""


class S3Unavailable(StoreUnavailable):
    """The S3 store could not be used: unreachable, stuck, refusing our credentials or the
    bucket, busy or failing (``StoreUnavailable``)."""


@dataclass(frozen=True)
class S3Context:
    """What a message may name: the endpoint (without user info), bucket and our secrets
    (only so they can be scrubbed from any text that passes through)."""

    endpoint: str
    bucket: str
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print the secrets, even in a debugger dump
        return f"S3Context(endpoint={self.endpoint!r}, bucket={self.bucket!r})"


def display_endpoint(endpoint: str | None, region: str) -> str:
    """The endpoint as shown to people: user info (``user:pass@``) removed. A malformed one is
    a StorageError naming the setting, not the value (it may hold a key); urlsplit's and
    botocore's own errors would quote it."""
    if not endpoint:
        return f"AWS S3 ({region})"
    if problem := endpoint_problem(endpoint):
        raise StorageError(f"backup.s3.endpoint is not a usable URL: {problem}",
                           hint="set it (or the env var it comes from, e.g. S3_ENDPOINT) to "
                                "http(s)://host[:port], e.g. http://127.0.0.1:9000")
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def unwrap(exc: BaseException) -> BaseException:
    """boto3 wraps upload failures in S3UploadFailedError; the cause is the real error."""
    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    return exc


def error_code(exc: BaseException) -> str:
    exc = unwrap(exc)
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "") or "")
    return ""


def http_status(exc: BaseException) -> int:
    exc = unwrap(exc)
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the network hiccuped, or the server is busy or failing."""
    exc = unwrap(exc)
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not fix itself in a second
    if isinstance(exc, ReadTimeoutError):
        return False  # botocore waited out each of its own attempts already: a stuck server
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLE_CODES | DAMAGED_CODES or http_status(exc) >= 500
    return False


def is_missing_key(exc: BaseException) -> bool:
    code = error_code(exc)
    return code in MISSING_KEY_CODES or (http_status(exc) == 404 and code != "NoSuchBucket")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every credential in ``text`` with ``***``; not one shorter than 4 characters
    (as ``operate.redact``): no real key is, and a test's ``x`` turned "exist" into "e***ist"."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def translate(exc: BaseException, action: str, target: str, ctx: S3Context) -> StorageError:
    """The StorageError for a boto failure while doing ``action`` on ``target``: an
    ``S3Unavailable`` but for a missing object (the store answered, the object is not there)."""
    real = unwrap(exc)
    where = f"S3 endpoint {ctx.endpoint}"
    if isinstance(real, SSLError):
        return S3Unavailable(f"TLS error talking to {where} while trying to {action} {target}",
                             hint="check backup.s3.endpoint (http vs https) and the server's certificate")
    if isinstance(real, ReadTimeoutError):
        return S3Unavailable(f"{where} did not answer in time to {action} {target}",
                             ref=S3_TIMEOUT_REF, hint="it takes connections but does not reply: check that the "
                                                     "server is not stuck or overloaded")
    if isinstance(real, BotoConnectionError):
        return S3Unavailable(f"cannot reach {where} to {action} {target}",
                             hint="check backup.s3.endpoint and the network (DNS, firewall, proxy)")
    if isinstance(real, (HTTPClientError, IncompleteReadError)):
        return S3Unavailable(f"connection to {where} broke while trying to {action} {target}",
                             hint="check the network; the operation was retried and still failed")
    if isinstance(real, ClientError):
        return _client_error(real, action, target, ctx)
    detail = scrub(type(real).__name__, ctx.secrets)
    return S3Unavailable(f"S3 failed to {action} {target} ({detail})",
                         hint="check the S3 settings in the spec and the endpoint's logs")


def _client_error(exc: ClientError, action: str, target: str, ctx: S3Context) -> StorageError:
    code = error_code(exc) or str(http_status(exc))
    server_text = scrub(str(exc.response.get("Error", {}).get("Message", "") or ""), ctx.secrets)
    detail = f"{code}: {server_text}" if server_text else code
    place = "" if target == ctx.bucket else f" in bucket {ctx.bucket}"
    message = f"S3 refused to {action} {target}{place} ({detail})"
    if code in AUTH_CODES:
        hint = CREDENTIALS_HINT + " (and that they may use this bucket)"
    elif code == "NoSuchBucket":
        hint = f"create bucket {ctx.bucket} at {ctx.endpoint}, or fix backup.s3.bucket"
    elif is_missing_key(exc) and code != "NoSuchKey" and action not in OBJECT_READS:
        message = (f"S3 endpoint {ctx.endpoint} answered {code} (not found) to {action} {target}{place}: "
                   "no such bucket there, or the endpoint is not the S3 server")
        hint = (f"check backup.s3.bucket ({ctx.bucket}) and that backup.s3.endpoint is the S3 server itself, "
                "http(s)://host[:port] without the bucket")
    elif is_missing_key(exc):
        message = f"{target} not found in bucket {ctx.bucket}"
        hint = "list backups with `reconcile backups list`; this copy may have been pruned"
    elif code in DAMAGED_CODES:
        hint = "the data was damaged on its way to S3 (network, proxy); it was retried: check the network"
    elif code in THROTTLE_CODES or http_status(exc) >= 500:
        hint = "the S3 server is busy or failing; it was retried, try again later"
    else:
        hint = "check the S3 settings in the spec and the endpoint's logs"
    if is_missing_key(exc) and action in OBJECT_READS:  # the store answered: this object is not there
        return StorageError(message, hint=hint)
    return S3Unavailable(message, hint=hint)
