"""django-q2 entry points: an id or a trigger in, one service call, nothing else.

Every task is idempotent: the ORM broker delivers at least once, so some will run twice.
"""
