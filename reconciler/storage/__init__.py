"""Backup storage: where backup files live and how long they stay.

``base`` (the Store protocol and the key layout), ``local`` (the primary copy on this
host), ``s3`` (the off-site copy), ``retention`` (pure keep/remove decisions) and
``prune`` (applies a decision to one store). Nothing is imported here, so importing the
pure ``retention`` module never pulls in boto3.
"""
