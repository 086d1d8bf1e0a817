"""``reconcile apply``: make the engine match the plan without losing data.

Where each rule lives:

* ``runner``   — the whole run: lock → plan (or a saved plan, refused when stale) →
  diagnose → confirm → journal → heal → execute → summary; exit codes.
* ``executor`` — the plan's actions in order, ``safety.check_step`` before each, journal
  lines around each; a failure rolls back the failing service's open swap.
* ``steps``    — one function per action kind (``match`` + ``assert_never``), no decisions.
* ``swap``     — how a container is replaced (candidate ``-new-<t>``, previous ``-old-<t>``).
* ``rollback`` — undo a swap; if that fails, exit 3 with the exact manual steps.
* ``volumes``  — fresh volume generations (``<project>_<vol>-<t>``) and their host folders.
* ``gate``     — health gates after a start, crash-loop detection, depends_on conditions.
* ``heal``     — unhealthy but unchanged: the shared heal (``reconciler.operate.heal``: start,
  restart, reconnect a recreated network, with retries), then re-plan with ``unhealthy=``.
* ``fallback`` — a server that crashes on its data cannot be backed up: the latest verified
  backup stands in (only when the plan's backup says ``fallback`` and the service is broken).
* ``journal``, ``lock`` — the record of every apply, and one apply at a time.

How an interrupted apply converges is decided by the planner: ``reconciler.plan.leftovers``.
"""
