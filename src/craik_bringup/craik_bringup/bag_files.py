"""rosbag2 MCAP bags without ROS: write, open and validate, read, and the replay schedule.

The layout is the one ``ros2 bag record -s mcap`` writes, so ``ros2 bag info`` / ``ros2 bag
play`` on the lab robot, ``rosbags`` and the ``mcap`` tools all read what ``craik record``
writes::

    BAG/
      metadata.yaml    rosbag2_bagfile_information, version 9 (topics, QoS, counts, times)
      BAG_0.mcap       profile ros2; one ros2msg schema per type (the .msg text and its
                       dependencies), one cdr channel per topic with its offered QoS and type
                       hash, messages with log_time = receive time and publish_time = send
                       time (ns since the epoch), a "rosbag2" metadata record

:func:`open_bag` checks everything that can be checked without reading every message (both
MCAP magics, the summary, a schema for every channel that parses, metadata.yaml agreeing with
the file) and :func:`scan_bag` reads every record once (chunk CRCs, decompression, message
counts), so a damaged bag is refused with a specific :class:`BagError` before anything of it is
used. :func:`replay_schedule` turns the recorded log times into the offsets a player publishes
at (``craik replay``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
import heapq
from pathlib import Path
import re
from struct import error as struct_error  # mcap's parser raises it on a short record
import threading
from typing import Any

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Schema
from mcap.writer import CompressionType, Writer
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import numpy.typing as npt
import yaml

from craik_world_model.mcap_framing import mcap_framing_problem

METADATA_FILE = 'metadata.yaml'
# rosbag2 metadata version written (Jazzy/Kilted read it; rosbags reads up to 9).
METADATA_VERSION = 9
ROS_DISTRO = 'kilted'
# ROS type names as rosbag2 stores them: package/msg|srv|action/Name.
TYPE_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*/(msg|srv|action)/[A-Za-z][A-Za-z0-9_]*$')
COMPRESSIONS = {'none': CompressionType.NONE, 'lz4': CompressionType.LZ4,
                'zstd': CompressionType.ZSTD}
# An unbounded QoS duration (RMW_DURATION_INFINITE) in rosbag2's {sec, nsec} form.
INFINITE_NS = 2**63 - 1


class BagError(ValueError):
    """A bag that cannot be written or used as it is; the message names the file and why."""


# ---------------------------------------------------------------------------------------------
# QoS as rosbag2 stores it (metadata.yaml version 9 and the MCAP channel metadata)


def _duration(ns: int) -> dict[str, int]:
    ns = max(0, min(int(ns), INFINITE_NS))
    return {'sec': ns // 1_000_000_000, 'nsec': ns % 1_000_000_000}


def qos_dict(reliability: str = 'reliable', durability: str = 'volatile',
             history: str = 'keep_last', depth: int = 10, deadline_ns: int = 0,
             lifespan_ns: int = 0, liveliness: str = 'automatic',
             liveliness_lease_ns: int = 0) -> dict[str, Any]:
    """One offered QoS profile in rosbag2's form (metadata version 9): policy names in lower
    case (``reliable`` / ``best_effort``, ``volatile`` / ``transient_local``, ...), durations
    as ``{sec, nsec}`` (0 = the default, ``INFINITE_NS`` = infinite)."""
    return {'history': history, 'depth': int(depth), 'reliability': reliability,
            'durability': durability, 'deadline': _duration(deadline_ns),
            'lifespan': _duration(lifespan_ns), 'liveliness': liveliness,
            'liveliness_lease_duration': _duration(liveliness_lease_ns),
            'avoid_ros_namespace_conventions': False}


def replay_qos(profiles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a player should offer for a topic recorded with these publisher profiles: reliable
    and transient-local only when every recorded publisher was (a latched topic stays latched,
    a best-effort camera stays best effort), depth the largest recorded (at least 10)."""
    reliable = bool(profiles) and all(p.get('reliability') == 'reliable' for p in profiles)
    latched = bool(profiles) and all(p.get('durability') == 'transient_local' for p in profiles)
    depth = max([int(p.get('depth', 0) or 0) for p in profiles] + [10])
    return qos_dict('reliable' if reliable else 'best_effort',
                    'transient_local' if latched else 'volatile', depth=depth)


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass
class _TopicState:
    name: str
    type: str
    type_hash: str
    qos: list[dict[str, Any]]
    channel_id: int
    count: int = 0
    bytes: int = 0


class BagWriter:
    """A rosbag2 MCAP bag being written; thread-safe. Use as a context manager or call
    :meth:`close` (a bag that is never closed has no summary and no metadata.yaml).

    Raises BagError if ``path`` exists (a bag is never overwritten) or its parent is missing.
    """

    def __init__(self, path: str | Path, compression: str = 'zstd',
                 chunk_size: int = 4 * 1024 * 1024, library: str = 'craik record') -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; a bag is never overwritten (choose '
                           'another name or remove it)')
        if not self.path.parent.is_dir():
            raise BagError(f'{self.path.parent} is not a directory')
        if compression not in COMPRESSIONS:
            raise BagError(f'compression must be one of {", ".join(COMPRESSIONS)}, not '
                           f'{compression!r}')
        self.path.mkdir()
        self.mcap_path = self.path / f'{self.path.name}_0.mcap'
        self._file = open(self.mcap_path, 'wb')  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file, chunk_size=chunk_size,
                              compression=COMPRESSIONS[compression])
        self._writer.start(profile='ros2', library=library)
        self._lock = threading.Lock()
        self._schemas: dict[str, int] = {}
        self._topics: dict[str, _TopicState] = {}
        self._start_ns: int | None = None
        self._end_ns = 0
        self._closed = False
        self.compression = compression

    def add_topic(self, name: str, type_name: str, definition: str, type_hash: str = '',
                  offered_qos: Sequence[dict[str, Any]] = ()) -> str:
        """Register a topic: its type (``pkg/msg/Name``), the ros2msg definition (the type's
        text, then each dependency after a ``=====`` / ``MSG: pkg/Name`` line), the RIHS01
        type hash and the publishers' offered QoS (:func:`qos_dict`). Returns ``name``."""
        if not TYPE_NAME.match(type_name):
            raise BagError(f'{name}: {type_name!r} is not a ROS type name (package/msg/Name)')
        if not definition.strip():
            raise BagError(f'{name}: empty message definition for {type_name}')
        qos = [dict(q) for q in offered_qos]
        with self._lock:
            if name in self._topics:
                raise BagError(f'{name} is already registered')
            schema_id = self._schemas.get(type_name)
            if schema_id is None:
                schema_id = self._writer.register_schema(type_name, 'ros2msg',
                                                         definition.encode())
                self._schemas[type_name] = schema_id
            metadata = {'offered_qos_profiles': _yaml(qos)}
            if type_hash:
                metadata['topic_type_hash'] = type_hash
            channel_id = self._writer.register_channel(name, 'cdr', schema_id, metadata)
            self._topics[name] = _TopicState(name, type_name, type_hash, qos, channel_id)
        return name

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int = 0
              ) -> None:
        """Append one serialized (CDR) message of a registered topic."""
        with self._lock:
            if self._closed:
                raise BagError(f'{self.path} is closed')
            state = self._topics.get(topic)
            if state is None:
                raise BagError(f'{topic} is not registered (add_topic first)')
            self._writer.add_message(state.channel_id, int(log_time_ns), bytes(data),
                                     int(publish_time_ns or log_time_ns), state.count)
            state.count += 1
            state.bytes += len(data)
            self._start_ns = (int(log_time_ns) if self._start_ns is None
                              else min(self._start_ns, int(log_time_ns)))
            self._end_ns = max(self._end_ns, int(log_time_ns))

    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic."""
        with self._lock:
            return {name: t.count for name, t in self._topics.items()}

    def bytes_written(self) -> int:
        """Serialized message bytes written so far (before compression)."""
        with self._lock:
            return sum(t.bytes for t in self._topics.values())

    def metadata(self) -> dict[str, Any]:
        """The rosbag2_bagfile_information of what was written so far."""
        with self._lock:
            start = self._start_ns or 0
            duration = max(0, self._end_ns - start) if self._start_ns is not None else 0
            total = sum(t.count for t in self._topics.values())
            name = self.mcap_path.name
            return {
                'version': METADATA_VERSION,
                'storage_identifier': 'mcap',
                'duration': {'nanoseconds': duration},
                'starting_time': {'nanoseconds_since_epoch': start},
                'message_count': total,
                'topics_with_message_count': [
                    {'topic_metadata': {'name': t.name, 'type': t.type,
                                        'serialization_format': 'cdr',
                                        'offered_qos_profiles': t.qos,
                                        'type_description_hash': t.type_hash},
                     'message_count': t.count}
                    for t in self._topics.values()],
                'compression_format': '',
                'compression_mode': '',
                'relative_file_paths': [name],
                'files': [{'path': name, 'starting_time': {'nanoseconds_since_epoch': start},
                           'duration': {'nanoseconds': duration}, 'message_count': total}],
                'custom_data': None,
                'ros_distro': ROS_DISTRO,
            }

    def close(self) -> None:
        """Finish the MCAP file (summary, footer) and write metadata.yaml; idempotent."""
        with self._lock:
            if self._closed:
                return
        info = self.metadata()
        with self._lock:
            self._writer.add_metadata('rosbag2', {'serialized_metadata': _yaml(info),
                                                  'ros_distro': ROS_DISTRO})
            self._writer.finish()
            self._file.close()
            self._closed = True
        tmp = self.path / (METADATA_FILE + '.tmp')
        tmp.write_text(_yaml({'rosbag2_bagfile_information': info}))
        tmp.replace(self.path / METADATA_FILE)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Opening and validating


@dataclass(frozen=True)
class TopicInfo:
    """One recorded topic."""

    name: str
    type: str
    definition: str
    type_hash: str
    offered_qos: list[dict[str, Any]]
    message_count: int


@dataclass
class BagInfo:
    """An opened, checked bag (:func:`open_bag`)."""

    path: Path
    files: list[Path]
    topics: dict[str, TopicInfo]
    start_ns: int
    end_ns: int
    message_count: int
    metadata: dict[str, Any] = field(default_factory=dict)   # rosbag2_bagfile_information

    @property
    def duration_s(self) -> float:
        """Log time from the first to the last message, s."""
        return max(0, self.end_ns - self.start_ns) * 1e-9


def check_framing(path: Path) -> None:
    """Refuse a file that does not start and end with the MCAP magic (not MCAP, or cut off)."""
    problem = mcap_framing_problem(path)
    if problem is not None:
        raise BagError(problem)


def _load_metadata(directory: Path) -> dict[str, Any]:
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        mcaps = sorted(p.name for p in directory.glob('*.mcap'))
        hint = (f' (it holds {", ".join(mcaps)}: the recorder did not close it; '
                '`ros2 bag reindex` rebuilds metadata.yaml, or open the .mcap file itself)'
                if mcaps else ' (not a rosbag2 directory)')
        raise BagError(f'{directory}: missing {METADATA_FILE}{hint}')
    try:
        doc = yaml.safe_load(meta_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BagError(f'{meta_path}: unreadable: {exc}') from exc
    info = doc.get('rosbag2_bagfile_information') if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise BagError(f'{meta_path}: no rosbag2_bagfile_information mapping')
    version = info.get('version')
    if not isinstance(version, int) or not 1 <= version <= 9:
        raise BagError(f'{meta_path}: rosbag2 metadata version {version!r} is not supported '
                       '(1..9)')
    if info.get('storage_identifier') != 'mcap':
        raise BagError(f'{meta_path}: storage {info.get("storage_identifier")!r} is not mcap '
                       '(convert sqlite3 bags with `ros2 bag convert`)')
    if info.get('compression_mode') not in (None, '', 'none'):
        raise BagError(f'{meta_path}: {info.get("compression_mode")}-compressed bags are not '
                       'supported (MCAP chunk compression is)')
    if not info.get('relative_file_paths'):
        raise BagError(f'{meta_path}: relative_file_paths is empty')
    return info


_READ_ERRORS = (McapError, ValueError, KeyError, EOFError, OSError, struct_error)


def _parse_qos(value: Any) -> list[dict[str, Any]]:
    """Offered QoS from metadata / channel metadata: a list (v9) or YAML text of one (v<9)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError:
            return []
    return [dict(v) for v in value or [] if isinstance(v, dict)]


def open_bag(path: str | Path) -> BagInfo:
    """Open a rosbag2 MCAP directory (or one .mcap file) and check it; raises BagError."""
    p = Path(path)
    if not p.exists():
        raise BagError(f'{p}: no such bag (directory or .mcap file)')
    meta: dict[str, Any] = {}
    if p.is_dir():
        meta = _load_metadata(p)
        files = [p / str(name) for name in meta['relative_file_paths']]
        for f in files:
            if not f.is_file():
                raise BagError(f'{p}: {METADATA_FILE} lists {f.name}, which is missing')
    else:
        files = [p]
    topics: dict[str, TopicInfo] = {}
    start, end, total = 2**63 - 1, 0, 0
    for f in files:
        check_framing(f)
        try:
            with open(f, 'rb') as stream:
                reader = make_reader(stream)
                summary = reader.get_summary()
        except _READ_ERRORS as exc:
            raise BagError(f'{f}: damaged MCAP summary: {type(exc).__name__}: {exc}') from exc
        if summary is None:
            raise BagError(f'{f}: no MCAP summary section (the file was not closed properly; '
                           '`mcap recover` rebuilds it)')
        counts = summary.statistics.channel_message_counts if summary.statistics else {}
        if summary.statistics and summary.statistics.message_count:
            start = min(start, summary.statistics.message_start_time)
            end = max(end, summary.statistics.message_end_time)
            total += summary.statistics.message_count
        for channel in summary.channels.values():
            schema = summary.schemas.get(channel.schema_id)
            where = f'{f}: topic {channel.topic}'
            if channel.schema_id == 0 or schema is None:
                raise BagError(f'{where} has no schema (message definition); it cannot be '
                               'decoded or republished')
            if channel.message_encoding != 'cdr':
                raise BagError(f'{where}: message encoding {channel.message_encoding!r} is '
                               'not cdr')
            if schema.encoding != 'ros2msg':
                raise BagError(f'{where}: schema encoding {schema.encoding!r} is not ros2msg')
            if not TYPE_NAME.match(schema.name):
                raise BagError(f'{where}: unknown type {schema.name!r} (not package/msg/Name)')
            text = schema.data.decode('utf-8', errors='replace')
            if not text.strip():
                raise BagError(f'{where}: empty message definition for {schema.name}')
            _check_definition(schema, where)
            qos = _parse_qos(channel.metadata.get('offered_qos_profiles', ''))
            previous = topics.get(channel.topic)
            if previous is not None and previous.type != schema.name:
                raise BagError(f'{where}: recorded as {previous.type} and {schema.name}')
            topics[channel.topic] = TopicInfo(
                channel.topic, schema.name, text, channel.metadata.get('topic_type_hash', ''),
                qos, (previous.message_count if previous else 0) + counts.get(channel.id, 0))
    if meta:
        for entry in meta.get('topics_with_message_count') or []:
            tm = entry.get('topic_metadata', {})
            name, typ = tm.get('name'), tm.get('type')
            if name not in topics:
                if int(entry.get('message_count', 0)):
                    raise BagError(f'{p}: {METADATA_FILE} lists {name} ({typ}, '
                                   f'{entry.get("message_count")} messages) but no MCAP file '
                                   'has it')
                continue
            if typ != topics[name].type:
                raise BagError(f'{p}: {METADATA_FILE} says {name} is {typ}, the MCAP file '
                               f'says {topics[name].type}')
            if not topics[name].offered_qos:
                qos = _parse_qos(tm.get('offered_qos_profiles'))
                old = topics[name]
                topics[name] = TopicInfo(name, typ, old.definition,
                                         old.type_hash or tm.get('type_description_hash', ''),
                                         qos, old.message_count)
    return BagInfo(p, files, topics, start if total else 0, end, total, meta)


_PRIMITIVES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16',
               'uint16', 'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}


def _decoder_name(type_name: str) -> str:
    """``pkg/Name`` with the underscores of a derived type's name dropped (see below)."""
    parts = type_name.split('/')
    return f'{parts[0]}/{parts[-1].replace("_", "")}'


def decodable_schema(schema: Schema) -> Schema:
    """The schema as ``mcap_ros2``'s parser accepts it.

    Types rosidl derives from actions and services (``ReachGoal_FeedbackMessage``,
    ``ReachGoal_SendGoal_Event``) have underscores that its message-name check refuses, and
    their definitions name nested types in full (``pkg/action/Name``). Decoding only needs the
    field layout, so those names are rewritten consistently (``pkg/ReachGoalFeedbackMessage``);
    the bag itself keeps the real ones.
    """
    if '_' not in schema.name.split('/')[-1] and '/action/' not in schema.data.decode() \
            and '/srv/' not in schema.data.decode():
        return schema
    lines = []
    for line in schema.data.decode('utf-8', errors='replace').splitlines():
        stripped = line.strip()
        if stripped.startswith('MSG:'):
            lines.append('MSG: ' + _decoder_name(stripped[4:].strip()))
            continue
        token, _, rest = stripped.partition(' ')
        base, bracket, suffix = token.partition('[')
        if stripped and not stripped.startswith('#') and \
                base not in _PRIMITIVES and not base.startswith(('string<', 'wstring<')) and \
                ('/' in base or '_' in base):
            line = f'{_decoder_name(base)}{bracket}{suffix} {rest}'
        lines.append(line)
    package, name = _decoder_name(schema.name).split('/')
    return Schema(id=schema.id, name=f'{package}/msg/{name}', encoding=schema.encoding,
                  data='\n'.join(lines).encode())


def _check_definition(schema: Schema, where: str) -> None:
    """Parse the ros2msg definition (raises BagError naming what is wrong)."""
    try:
        DecoderFactory().decoder_for('cdr', decodable_schema(schema))
    except Exception as exc:  # noqa: BLE001 (mcap_ros2 raises several types on bad text)
        raise BagError(f'{where}: malformed message definition for {schema.name}: '
                       f'{type(exc).__name__}: {exc}') from exc


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class BagMessage:
    """One recorded message, still serialized."""

    topic: str
    type: str
    log_time_ns: int        # when the recorder received it
    publish_time_ns: int    # when the publisher sent it (the log time if unknown)
    data: bytes             # CDR



def _iter_file(path: Path, topics: Sequence[str] | None, validate: bool
               ) -> Iterator[BagMessage]:
    try:
        with open(path, 'rb') as stream:
            reader = make_reader(stream, validate_crcs=validate)
            for schema, channel, message in reader.iter_messages(
                    topics=list(topics) if topics is not None else None,
                    log_time_order=True):
                yield BagMessage(channel.topic, schema.name if schema else '',
                                 message.log_time, message.publish_time, message.data)
    except _READ_ERRORS as exc:
        raise BagError(f'{path}: damaged MCAP data (truncated or corrupt chunk): '
                       f'{type(exc).__name__}: {exc}') from exc
    except Exception as exc:  # noqa: BLE001 (decompressors raise their own types)
        raise BagError(f'{path}: damaged MCAP data: {type(exc).__name__}: {exc}') from exc


def iter_messages(bag: BagInfo, topics: Iterable[str] | None = None, validate: bool = False
                  ) -> Iterator[BagMessage]:
    """The bag's messages (of ``topics``; all if None) in log-time order across its files.
    ``validate`` checks chunk CRCs. Raises BagError on damaged data."""
    wanted = None if topics is None else [t for t in topics if t in bag.topics]
    if wanted is not None and not wanted:
        return iter(())
    streams = [_iter_file(f, wanted, validate) for f in bag.files]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda m: m.log_time_ns)


@dataclass(frozen=True)
class BagScan:
    """Every message's log time and topic (the data itself is not kept)."""

    log_times_ns: npt.NDArray[np.int64]     # [M] ascending
    topics: list[str]                       # [M]
    counts: dict[str, int]


def scan_bag(bag: BagInfo, topics: Iterable[str] | None = None) -> BagScan:
    """Read every record once (CRCs, decompression, counts) and return the message times.

    Raises BagError for damaged data or for counts that disagree with the summary or
    metadata.yaml (a file that was altered after it was closed)."""
    times: list[int] = []
    names: list[str] = []
    counts: dict[str, int] = {}
    wanted = list(topics) if topics is not None else None
    for message in iter_messages(bag, wanted, validate=True):
        times.append(message.log_time_ns)
        names.append(message.topic)
        counts[message.topic] = counts.get(message.topic, 0) + 1
    for name, topic in bag.topics.items():
        if wanted is not None and name not in wanted:
            continue
        if counts.get(name, 0) != topic.message_count:
            raise BagError(f'{bag.path}: {name} has {counts.get(name, 0)} readable messages, '
                           f'the summary says {topic.message_count} (damaged file)')
    return BagScan(np.asarray(times, dtype=np.int64), names, counts)


def decoder_for(bag: BagInfo, topic: str) -> Callable[[bytes], Any]:
    """A function decoding ``topic``'s CDR messages into objects with the message's fields
    (from the bag's own definition; no ROS needed)."""
    info = bag.topics[topic]
    schema = Schema(id=1, name=info.type, encoding='ros2msg', data=info.definition.encode())
    decoder = DecoderFactory().decoder_for('cdr', decodable_schema(schema))
    if decoder is None:
        raise BagError(f'{bag.path}: cannot decode {topic} ({info.type})')

    def decode(data: bytes) -> Any:
        try:
            return decoder(data)
        except Exception as exc:  # noqa: BLE001
            raise BagError(f'{bag.path}: a {topic} message does not decode as {info.type}: '
                           f'{type(exc).__name__}: {exc}') from exc

    return decode


def iter_decoded(bag: BagInfo, topics: Iterable[str]) -> Iterator[tuple[BagMessage, Any]]:
    """(message, decoded message) of ``topics`` in log-time order."""
    wanted = [t for t in topics if t in bag.topics]
    decoders = {t: decoder_for(bag, t) for t in wanted}
    for message in iter_messages(bag, wanted):
        yield message, decoders[message.topic](message.data)


# ---------------------------------------------------------------------------------------------
# Replay timing


@dataclass(frozen=True)
class ReplaySchedule:
    """When a player publishes each message, relative to the start of the replay."""

    offsets_s: npt.NDArray[np.float64]   # [M] offsets of one pass, s (first message at 0)
    period_s: float                      # one pass plus the gap before the next (--loop)

    def offset(self, index: int, loop: int = 0) -> float:
        """Offset of message ``index`` in pass ``loop`` (0 = the first), s."""
        return float(self.offsets_s[index]) + loop * self.period_s


def replay_schedule(log_times_ns: Sequence[int] | npt.NDArray[np.int64], rate: float = 1.0
                    ) -> ReplaySchedule:
    """Offsets ``(t_i - t_0) / rate`` of ascending log times; a loop's next pass starts one
    median message gap (scaled likewise; 0.1 s for a single message) after the last message.

    Raises ValueError for a rate that is not a positive finite number or times that are not
    ascending."""
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f'rate must be a positive number, got {rate}')
    t = np.asarray(log_times_ns, dtype=np.int64)
    if t.size == 0:
        return ReplaySchedule(np.zeros(0), 0.0)
    gaps = np.diff(t)
    if np.any(gaps < 0):
        raise ValueError('log times must be ascending')
    offsets = (t - t[0]).astype(np.float64) * 1e-9 / rate
    positive = gaps[gaps > 0]
    gap = float(np.median(positive)) * 1e-9 / rate if positive.size else 0.1 / rate
    return ReplaySchedule(offsets, float(offsets[-1]) + gap)
