"""Models, one module per aggregate. Each module lists its models in __all__; they are
gathered here so Django finds them. Add a module here when you add an aggregate."""

from .atlas import *  # noqa: F403
from .base import MirroredRecord as MirroredRecord
from .base import RecordChange as RecordChange
from .base import SyncState as SyncState
from .inbound import *  # noqa: F403
from .jobs import *  # noqa: F403
from .journals import *  # noqa: F403
from .parties import *  # noqa: F403
from .problems import *  # noqa: F403
from .reconciliation import *  # noqa: F403
from .reference import *  # noqa: F403
from .runs import SyncRun as SyncRun
from .runs import SyncRunError as SyncRunError
from .writeback import *  # noqa: F403
