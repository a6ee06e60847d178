"""The tables (sqlmodel). Reads and the API go through these models; the checkpoint hot path
uses their Core tables with prepared statements on a dedicated writer connection."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel


class DefinitionRow(SQLModel, table=True):
    __tablename__ = "definitions"
    version: str = Field(primary_key=True)
    orchestration_id: str = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: float


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(primary_key=True)
    orchestration_id: str = Field(index=True)
    version: str
    status: str = Field(index=True)
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    frontier: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    gate: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    response: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    cost_usd: float = 0.0
    turns: int = 0
    steps_done: int = 0
    last_seq: int = 0
    active_seconds: float = 0.0
    gate_deadline: Optional[float] = None
    created_at: float = Field(index=True)
    updated_at: float
    finished_at: Optional[float] = None
    epoch: int = 0
    owner: Optional[str] = None
    lease_until: Optional[float] = None
    parent_run_id: Optional[str] = Field(default=None, index=True)
    parent_step_id: Optional[str] = None
    depth: int = 0


class StepRow(SQLModel, table=True):
    __tablename__ = "step_records"
    __table_args__ = {"sqlite_with_rowid": False}  # the primary key is the row: one b-tree, not two
    run_id: str = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    step_id: str
    step_name: str
    type: str
    status: str
    iteration: int
    turns: int
    cost_usd: float
    started_at: float
    ended_at: float
    output_key: Optional[str] = None
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    writes: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    key: str = Field(primary_key=True)
    run_id: str
    created_at: float


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    name: str = ""
    key_hash: str = Field(index=True)
    created_at: float
