"""Zero-downtime deploys: blue-green with a managed proxy, kept versions, ``reconcile rollback``.

Where each rule lives:

* ``rules``     — pure: names, the proxy's desired container, kept versions and pruning.
* ``planning``  — pure: the ``switch-traffic`` action, proxy removal, prune removals in a plan.
* ``nginx``     — pure: the proxy's config text (one server per port, a control server).
* ``proxy``     — the engine side of the proxy: create/recreate/start it, switch its upstream
  (atomic write → ``nginx -t`` → ``nginx -s reload`` → confirm the new workers serve it).
* ``bluegreen`` — one replacement: start the new container → ready → promote the names →
  switch the proxy → drain → stop the old one (kept); undone on failure.
* ``watch``     — the new container around the switch: its ports answer, it keeps serving.
* ``rollback``  — ``reconcile rollback``: the same steps with the newest kept version.

This module imports nothing, so the pure parts load without the engine's SDK.
"""
