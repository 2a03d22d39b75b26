"""layoutsync: declarative multi-host layouts for Agora's Cloud Transcoder.

The pipeline, one module per stage: spec -> compile -> validate -> plan ->
apply -> store. ``Session`` runs it on every host join or leave; the API
client lives in ``layoutsync.api``, the emulator in ``layoutsync.emulator``
and the sync daemon in ``layoutsync.daemon``.
"""

from .api import (
    Accepted,
    AsyncClient,
    BuilderToken,
    Client,
    MalformedResponse,
    RetryPolicy,
    Task,
    Updated,
    WaitEvent,
)
from .apply import AsyncSession, ReconcileResult, Session, SessionStatus, UnknownTaskConflict
from .compile import Compiled, Placement, SlotAssignment, compile_layout
from .errors import (
    ApiError,
    BadRequest,
    FieldError,
    Forbidden,
    InstanceConflict,
    InternalCompilerError,
    LayoutsyncError,
    RateLimited,
    RequestTimeout,
    ServerError,
    SpecError,
    StateError,
    TaskNotFound,
    TransportError,
    Unauthorized,
    ValidationError,
)
from .plan import HostChange, Plan
from .redis_store import LeaseLost, RedisStore
from .spec import LayoutSpec, SpecFileError, load_spec
from .store import DesiredInputs, MemoryStore, SessionState, SqliteStore, StateStore
from .tokens import TokenMinter
from .validate import check_request, validate_request

__version__ = "0.1.0"

__all__ = [
    "Accepted",
    "ApiError",
    "AsyncClient",
    "AsyncSession",
    "BadRequest",
    "BuilderToken",
    "Client",
    "Compiled",
    "DesiredInputs",
    "FieldError",
    "Forbidden",
    "HostChange",
    "InstanceConflict",
    "InternalCompilerError",
    "LayoutSpec",
    "LayoutsyncError",
    "LeaseLost",
    "MalformedResponse",
    "MemoryStore",
    "Placement",
    "Plan",
    "RateLimited",
    "ReconcileResult",
    "RedisStore",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "Session",
    "SessionState",
    "SessionStatus",
    "SlotAssignment",
    "SpecError",
    "SpecFileError",
    "SqliteStore",
    "StateError",
    "StateStore",
    "Task",
    "TaskNotFound",
    "TokenMinter",
    "TransportError",
    "Unauthorized",
    "UnknownTaskConflict",
    "Updated",
    "ValidationError",
    "WaitEvent",
    "__version__",
    "check_request",
    "compile_layout",
    "load_spec",
    "validate_request",
]
