"""Opening a bag's storage: rosbags' Reader when the bag is sound, record-by-record scanners of
the MCAP / sqlite3 file when it is damaged (truncated, index or metadata lost).

File-compressed bags (``ros2 bag record --compression-mode file``: ``*.mcap.zstd``,
``*.db3.zstd``, zstd being rosbag2's one compression format) are read by rosbags as they
are; a lone compressed file, or a damaged compressed bag, is first decompressed into a
temporary folder (as much of it as is readable), then read as above.

Each source offers ``connections``, ``counts``, ``custom``, ``duration_ns``, ``messages(conns)``
and ``close()``; problems met while opening are appended to the caller's list.
"""
from __future__ import annotations

import mmap
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from lanesad_ros.ros.bag.typestore import BagError

_MCAP_MAGIC = b"\x89MCAP0\r\n"
ZSTD_SUFFIX = ".zstd"  # the file name suffix rosbag2 gives file-compressed storage files


class _Conn(NamedTuple):
    """The parts of a rosbags Connection we use, whichever reader produced it."""

    topic: str
    msgtype: str
    msgdef: str
    raw: Any  # the reader's own connection object


def _storage_id(file: Path) -> str:
    """rosbag2 storage id of a data file, compressed (``x.mcap.zstd``) or not."""
    name = file.name.removesuffix(ZSTD_SUFFIX)
    return "mcap" if name.endswith(".mcap") else "sqlite3"


def _storage_file(path: Path) -> tuple[str, list[Path]]:
    """(storage id, data files) of a bag folder or a single .mcap/.db3 file (either may be zstd-compressed)."""
    if path.is_file():
        return _storage_id(path), [path]
    for pattern in ("*.mcap", "*.db3", "*.mcap" + ZSTD_SUFFIX, "*.db3" + ZSTD_SUFFIX):
        files = sorted(path.glob(pattern))
        if files:
            return _storage_id(files[0]), files
    present = sorted(p.name for p in path.iterdir())
    raise BagError(f"{path}: no .mcap or .db3 file (nor .mcap.zstd / .db3.zstd) in the bag folder "
                   f"(it holds: {', '.join(present[:8]) or 'nothing'}{', ...' if len(present) > 8 else ''})")


def _zstd():
    """The zstd module: Python 3.14's ``compression.zstd``, else the backport rosbags reads compressed
    bags with. Imported on use, like rosbags: only compressed bags need it, and ``lanesad-train``
    (which imports this module through ``adapt``) must run where it is missing. BagError if absent."""
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
    except ImportError:
        raise BagError("reading a zstd-compressed bag needs the zstd module: pip install backports.zstd") from None
    return zstd


def _decompress(file: Path, folder: Path) -> tuple[Path, str]:
    """(decompressed copy of a zstd-compressed storage file in ``folder``, "" or what was cut).
    A cut or damaged stream keeps what came before the damage."""
    zstd = _zstd()
    out = folder / file.name.removesuffix(ZSTD_SUFFIX)
    try:
        with file.open("rb") as raw, zstd.open(raw, "rb") as infile, out.open("wb") as outfile:
            shutil.copyfileobj(infile, outfile)
    except (zstd.ZstdError, EOFError) as exc:
        return out, f"{file.name}: compressed stream damaged after {out.stat().st_size} bytes ({exc})"
    return out, ""


class _Decompressed:
    """A source reading a decompressed copy of a compressed bag file; close() removes the copy."""

    def __init__(self, source: Any, folder: tempfile.TemporaryDirectory) -> None:
        self._source, self._folder = source, folder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def close(self) -> None:
        try:
            self._source.close()
        finally:
            self._folder.cleanup()


class _RosbagsSource:
    """The normal path: rosbags' Reader."""

    def __init__(self, path: Path) -> None:
        # Lazy: rosbags is an optional dependency (setup.py extra "eval"); only bag work needs it.
        from rosbags.rosbag2 import Reader

        self.reader = Reader(path)
        self.reader.open()
        self.connections = [_Conn(c.topic, c.msgtype, getattr(c.msgdef, "data", "") or "", c)
                            for c in self.reader.connections]
        self.counts = Counter()
        for c in self.reader.connections:
            self.counts[c.topic] += c.msgcount
        self.custom = dict(getattr(self.reader.storage.metadata, "custom", None) or {})
        self.duration_ns = self.reader.duration if self.reader.message_count else 0

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        by_raw = {id(c.raw): c for c in conns}
        for raw, timestamp, data in self.reader.messages(connections=[c.raw for c in conns]):
            yield by_raw[id(raw)], timestamp, data

    def close(self) -> None:
        self.reader.close()


class _McapRecovery:
    """Reads the complete records of a damaged MCAP file (its summary/index is lost).

    Walks the data section record by record (memory-mapped); chunks are opened, and the
    complete records of a cut uncompressed chunk are still used. Stops at the damage.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.buf = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        if self.buf[:8] != _MCAP_MAGIC:
            self.close()
            raise BagError(f"{path}: not an MCAP file (bad magic)")
        self.path = path
        self.stop_reason = ""
        self._schemas: dict[int, tuple[str, str]] = {}
        self._channels: dict[int, _Conn] = {}
        self._index: list[tuple] = []  # (log time, order, channel id, buffer, start, end)
        self._scan(self.buf, 8, len(self.buf), top=True)
        self._index.sort(key=lambda e: (e[0], e[1]))
        self.connections = list(self._channels.values())
        counts = Counter(self._channels[e[2]].topic for e in self._index)
        self.counts = counts
        self.custom: dict = {}
        self.duration_ns = 0

    def _scan(self, buf: Any, pos: int, end: int, top: bool) -> bool:
        """Collect schemas, channels and message locations; False once damage is met."""
        while pos < end:
            if pos + 9 > end:
                self.stop_reason = f"record header cut at byte {pos}"
                return False
            op = buf[pos]
            (length,) = struct.unpack_from("<Q", buf, pos + 1)
            body, nxt = pos + 9, pos + 9 + length
            if op in (0x02, 0x0F):  # footer, data end
                return True
            if nxt > end:
                self.stop_reason = f"record (op 0x{op:02x}) at byte {pos} cut by the end of the file"
                if op == 0x06 and top:
                    self._chunk(buf, body, end, cut=True)
                return False
            if op == 0x03:
                (sid,) = struct.unpack_from("<H", buf, body)
                name, q = _mcap_string(buf, body + 2)
                _, q = _mcap_string(buf, q)  # encoding
                (dlen,) = struct.unpack_from("<I", buf, q)
                self._schemas[sid] = (name, bytes(buf[q + 4:q + 4 + dlen]).decode("utf-8", "replace"))
            elif op == 0x04:
                cid, sid = struct.unpack_from("<HH", buf, body)
                topic, _ = _mcap_string(buf, body + 4)
                name, msgdef = self._schemas.get(sid, ("", ""))
                self._channels[cid] = _Conn(topic, name, msgdef, cid)
            elif op == 0x05:
                (cid,) = struct.unpack_from("<H", buf, body)
                (log_time,) = struct.unpack_from("<Q", buf, body + 6)
                self._index.append((log_time, len(self._index), cid, buf, body + 22, nxt))
            elif op == 0x06 and top:
                if not self._chunk(buf, body, nxt, cut=False):
                    return False
            pos = nxt
        return True

    def _chunk(self, buf: Any, body: int, end: int, cut: bool) -> bool:
        # Lazy: rosbags is an optional dependency (setup.py extra "eval"); only bag work needs it.
        from rosbags.rosbag2.storage_mcap import decompress

        usize, crc = struct.unpack_from("<QI", buf, body + 16)
        compression, q = _mcap_string(buf, body + 28)
        (csize,) = struct.unpack_from("<Q", buf, q)
        start = q + 8
        if compression == "":
            inner_end = min(start + csize, end)
            ok = self._scan(buf, start, inner_end, top=False)
            return ok and not cut
        if cut:
            self.stop_reason += f" (a {compression} chunk: its messages are lost)"
            return False
        inner = decompress(bytes(buf[start:start + csize]), compression, usize, crc)
        return self._scan(inner, 0, len(inner), top=False)

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        wanted = {c.raw: c for c in conns}
        for log_time, _, cid, buf, start, end in self._index:
            if cid in wanted:
                yield wanted[cid], log_time, bytes(buf[start:end])

    def close(self) -> None:
        if getattr(self, "buf", None) is not None:
            self._index = []
            self.buf.close()
            self.buf = None
        self._file.close()


def _mcap_string(buf: Any, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode("utf-8", "replace"), pos + 4 + n


class _SqliteRecovery:
    """Reads the rows still readable from a truncated sqlite3 bag, in insertion order.

    SQLite refuses a file shorter than its header says; a temporary copy cut to whole pages
    with the header's page count corrected opens, and rows read until the first lost page.
    """

    def __init__(self, path: Path) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="lanesad_bag_recovery_")
        copy = Path(self._tmp.name) / path.name
        data = bytearray(path.read_bytes())
        if data[:16] != b"SQLite format 3\x00":
            self._tmp.cleanup()
            raise BagError(f"{path}: not an SQLite database (bad header)")
        (page,) = struct.unpack_from(">H", data, 16)
        page = 65536 if page == 1 else page
        del data[len(data) // page * page:]
        struct.pack_into(">I", data, 28, len(data) // page)
        copy.write_bytes(data)
        self.con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, check_same_thread=False)
        try:
            rows = self.con.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise BagError(f"{path}: topics table unreadable ({exc})") from None
        defs = {}
        try:
            defs = dict(self.con.execute("SELECT topic_type, encoded_message_definition FROM message_definitions"))
        except sqlite3.DatabaseError:
            pass  # older bags have no definitions table; our own types are registered anyway
        self.connections = [_Conn(name, typ, defs.get(typ, ""), tid) for tid, name, typ in rows]
        self.counts = Counter()
        self.custom: dict = {}
        self.duration_ns = 0

    def messages(self, conns: list[_Conn]) -> Iterator[tuple[_Conn, int, bytes]]:
        by_id = {c.raw: c for c in conns}
        cur = self.con.execute(
            f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({','.join('?' * len(by_id))})",
            list(by_id))
        for tid, timestamp, data in cur:
            yield by_id[tid], timestamp, data

    def close(self) -> None:
        if getattr(self, "con", None) is not None:
            self.con.close()
            self.con = None
        self._tmp.cleanup()


def open_source(path: Path, problems: list[str]):
    """(storage id, message source) of a bag folder or file; falls back to recovery when damaged.

    A folder without metadata.yaml (a recording that died) is read from its data file; a
    file whose index or tail is damaged is read record by record up to the damage. What
    went wrong is appended to ``problems``.
    """
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    storage, files = _storage_file(path)
    errors = []
    if path.is_dir():
        try:
            return storage, _RosbagsSource(path)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damage
            errors.append(f"{type(exc).__name__}: {exc}")
    if files[0].name.endswith(ZSTD_SUFFIX):
        folder = tempfile.TemporaryDirectory(prefix="lanesad_bag_")
        try:
            data, cut = _decompress(files[0], Path(folder.name))
            source = _open_file(path, data, storage, len(files), errors + [cut] if cut else errors, problems)
            return storage, _Decompressed(source, folder)
        except BaseException:
            folder.cleanup()
            raise
    return storage, _open_file(path, files[0], storage, len(files), errors, problems)


def _open_file(path: Path, data: Path, storage: str, file_count: int, errors: list[str], problems: list[str]):
    """A source for one (uncompressed) data file of bag ``path``: rosbags when it reads it, else
    the record-by-record recovery. ``errors``: what failed before (rosbags on the folder, a cut
    compressed stream): reported as the damage when the recovery is needed."""
    try:
        source = _RosbagsSource(data)
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damage
        error = f"{type(exc).__name__}: {exc}"
        if error not in errors:
            errors.append(error)
    else:
        cut = [e for e in errors if "compressed stream damaged" in e]
        if cut:
            problems.append(f"{path}: bag damaged, reading what is left ({cut[0]})")
        return source
    problem = f"{path}: bag damaged, reading what is left ({'; '.join(errors)})"
    if file_count > 1:
        problem += f"; only the first of {file_count} files is recovered"
    try:
        source = _McapRecovery(data) if storage == "mcap" else _SqliteRecovery(data)
    except BagError as exc:
        raise BagError(f"{problem}; recovery failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure here means nothing is readable
        raise BagError(f"{problem}; recovery failed: {type(exc).__name__}: {exc}") from None
    if getattr(source, "stop_reason", ""):
        problem += f"; stopped at: {source.stop_reason}"
    problems.append(problem)
    source.expected_counts = _metadata_counts(path)
    return source


def _metadata_counts(path: Path) -> dict[str, int]:
    """Message counts per topic that metadata.yaml promises (empty when it is unreadable)."""
    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"]) for t in meta["topics_with_message_count"]}
    except Exception:  # noqa: BLE001 - only used to say how much was lost
        return {}
