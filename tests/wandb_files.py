"""Read what an offline W&B run wrote: its ``run-<id>.wandb`` records and its media files.

An offline run folder (``<run folder>/wandb/offline-run-<time>-<id>/``) holds the run's
transaction log ``run-<id>.wandb``: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
LevelDB-log blocks of 32 KiB whose chunks (4-byte checksum, 2-byte length, 1-byte type:
full/first/middle/last) carry W&B's protobuf ``Record`` messages (``wandb_internal_pb2``).
Tables and images are files under ``files/media/``, named by the records.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from wandb.proto import wandb_internal_pb2

HEADER = struct.Struct("<4sHB")
BLOCK = 32 * 1024
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B run log"
    offset, pending = HEADER.size, b""
    while offset + CHUNK.size <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < CHUNK.size:  # the block's tail is padding
            offset += left_in_block
            continue
        _, length, kind = CHUNK.unpack_from(data, offset)
        offset += CHUNK.size
        payload, offset = data[offset : offset + length], offset + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@dataclass
class OfflineRun:
    """What one offline run recorded."""

    folder: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # define_metric
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False

    def history_keys(self) -> set[str]:
        return {key for row in self.history for key in row}

    def logged(self, key: str) -> dict[str, Any]:
        """The last history value logged under ``key`` (a media or table reference)."""
        rows = [row for row in self.history if any(k.startswith(key + ".") for k in row)]
        assert rows, f"{key} was never logged; keys: {sorted(self.history_keys())}"
        prefix = key + "."
        return {k[len(prefix) :]: v for k, v in rows[-1].items() if k.startswith(prefix)}

    def table(self, key: str) -> dict[str, Any]:
        """A logged ``wandb.Table`` (``columns``, ``data``) read from its file."""
        ref = self.logged(key)
        return json.loads((self.folder / "files" / ref["path"]).read_text())


def finished_records(log_file: Path, wait_s: float) -> list[wandb_internal_pb2.Record]:
    """The records of a run that has ended (its ``exit`` record written): W&B's service
    process may still be writing for a moment after ``wandb.finish()`` returns."""
    deadline = time.monotonic() + wait_s
    while True:
        found = list(records(log_file))
        if any(r.WhichOneof("record_type") == "exit" for r in found):
            return found
        assert time.monotonic() < deadline, f"{log_file} has no exit record: the run never ended"
        time.sleep(0.2)


def read_run(folder: Path, wait_s: float = 30.0) -> OfflineRun:
    """Read ``offline-run-*/run-*.wandb`` of one offline run folder, once the run has ended."""
    (log_file,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for record in finished_records(log_file, wait_s):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run  # a later run record (an update) may leave fields empty
            run.id = r.run_id or run.id
            run.name = r.display_name or run.name
            run.group = r.run_group or run.group
            run.job_type = r.job_type or run.job_type
            run.tags = list(r.tags) or run.tags
            run.resumed = run.resumed or r.resumed
            run.config.update(items(r.config.update))
        elif kind == "config":
            run.config.update(items(record.config.update))
        elif kind == "summary":
            run.summary.update(items(record.summary.update))
        elif kind == "history":
            run.history.append(items(record.history.item))
        elif kind == "metric":
            metric = record.metric
            run.metrics[metric.name or metric.glob_name] = MessageToDict(metric)
        elif kind == "artifact":
            run.artifacts.append(MessageToDict(record.artifact, preserving_proto_field_name=True))
    return run


def items(entries: Any) -> dict[str, Any]:
    """``{key: value}`` of W&B's (key or nested_key, value_json) items."""
    out = {}
    for item in entries:
        key = item.key or ".".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


def offline_runs(run_folder: Path) -> list[OfflineRun]:
    """Every offline W&B run of a run folder (a resumed run has one per process), in order."""
    return [read_run(f) for f in sorted((run_folder / "wandb").glob("offline-run-*"))]
