"""The admin API's batch objects: OpenAI's Batch object
(https://platform.openai.com/docs/api-reference/batch/object) with its owner and cost,
and their list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

BatchStatus = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]


class BatchErrorOut(BaseModel):
    code: str | None
    message: str | None
    param: str | None
    line: int | None


class BatchErrorsOut(BaseModel):
    """Why the batch failed as a whole (its input could not be read)."""

    object: Literal["list"]
    data: list[BatchErrorOut]


class BatchCountsOut(BaseModel):
    total: int
    completed: int
    failed: int


class BatchUsageOut(BaseModel):
    """Tokens of the batch's answers so far."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class AdminBatchOut(BaseModel):
    """A batch as an admin sees it: OpenAI's object, its owner and its cost."""

    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrorsOut | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int | None
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: BatchCountsOut
    metadata: dict[str, str] | None
    usage: BatchUsageOut
    user_id: int
    user_name: str | None
    cost: float = Field(description="In the currency of the models' prices")


class AdminBatchList(BaseModel):
    """A page of batches, newest first; pass ``last_id`` as ``after`` for the next."""

    object: Literal["list"] = "list"
    data: list[AdminBatchOut]
    first_id: str | None
    last_id: str | None
    has_more: bool
