"""layoutsync: declarative multi-host layouts for Agora's Cloud Transcoder.

spec -> compile -> validate -> plan -> apply -> store.
"""

from .errors import (
    ApiError,
    BadRequest,
    FieldError,
    Forbidden,
    InstanceConflict,
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
from .validate import validate_request

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "BadRequest",
    "FieldError",
    "Forbidden",
    "InstanceConflict",
    "LayoutsyncError",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "SpecError",
    "StateError",
    "TaskNotFound",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "validate_request",
]
