"""Commands beyond plan/validate/schema register here, so `main` sees them all."""

from reconciler.cli import data  # noqa: F401
from reconciler.cli import ci  # noqa: F401
from reconciler.cli import apply_cmd  # noqa: F401
from reconciler.cli import operate_cmd  # noqa: F401
from reconciler.cli import rollback_cmd  # noqa: F401
