"""Framework-neutral serving: requests in, responses out, one handler for every adapter."""

from stepline._comm.handler import DEFAULT_SERVE_PATH as DEFAULT_SERVE_PATH
from stepline._comm.handler import CommHandler as CommHandler
from stepline._comm.messages import CommRequest as CommRequest
from stepline._comm.messages import CommResponse as CommResponse

__all__ = ["DEFAULT_SERVE_PATH", "CommHandler", "CommRequest", "CommResponse"]
