"""A part of ``bench/sync.py`` (see its text): a lab's week offline, sent over 256 kbit/s.

The week: a school's climate stations and sensors, 1,028,160 readings over 7 days:

- an outdoor station: temperature (2 decimals), humidity and pressure (1 decimal) every 10 s;
- a classroom station: temperature (2 decimals), humidity (1 decimal), CO2 (ppm, whole
  numbers) every 10 s;
- a light sensor (lux, 1 decimal) every 10 s;
- a sound level meter (dB, 1 decimal) every second.

Values follow a daily cycle plus a random walk and are rounded as the devices print them;
each message's time is its period plus up to 50 ms of jitter (the hub stamps what it
receives), in microseconds, shared by the channels of a device. They are written into a
fresh hub database (SQLite) through ``sensors.storage.BatchWriter`` as a live pipeline
would: one batch per second of the week (what arrived in it), so the journal holds the
spans the hub really keeps.

Then the readings' up stream collects sections of ``network_batch_bytes`` (256 KiB), each
packed as a batch (``labhub.network.protocol.pack_batch``) and sent with the HTTP request
headers of its ``PUT`` through a local TCP socket throttled to 256 kbit/s (a token bucket
on the sender; the receiver reads as fast as it can). Printed: the readings' bytes per
reading (codec only), the bytes on the wire per reading (batch container and request
headers included), the hub's CPU to collect and encode the week, the send time, and the
codec's speed and the compressors compared on the same bodies (zlib 6 and 9, lzma).
"""

from __future__ import annotations

import lzma
import math
import random
import socket
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path

from labhub.db import make_engine, upgrade
from labhub.network.codec import decode, encode, encode_body
from labhub.network.protocol import BATCH, Section, digest, pack_batch
from labhub.network.up_readings import ReadingsStream
from labhub.settings import Settings
from sensors.storage import ReadingStore

WEEK_S = 7 * 86_400
START_US = 1_764_547_200_000_000  # 2025-12-01 00:00 UTC
LINK_KBIT = 256
HOST = "central.redlabs.example.org"

# (device, channel, quantity, unit, period s, decimals, centre, daily swing, walk step)
CHANNELS = (
    ("clima-patio", "temperatura", "temperature", "degC", 10, 2, 22.0, 6.0, 0.02),
    ("clima-patio", "humedad", "humidity", "%", 10, 1, 65.0, 15.0, 0.1),
    ("clima-patio", "presion", "pressure", "hPa", 10, 1, 1013.0, 1.5, 0.05),
    ("clima-aula", "temperatura", "temperature", "degC", 10, 2, 24.0, 3.0, 0.01),
    ("clima-aula", "humedad", "humidity", "%", 10, 1, 55.0, 8.0, 0.1),
    ("clima-aula", "co2", "co2", "ppm", 10, 0, 700.0, 300.0, 3.0),
    ("luz-1", "luz", "illuminance", "lx", 10, 1, 400.0, 390.0, 2.0),
    ("sonido-1", "nivel", "sound_level", "dB", 1, 1, 50.0, 12.0, 0.3),
)


def week_rows(seconds: int, seed: int = 7) -> list[tuple[str, str, int, float]]:
    """``(device, channel, ts, value)`` of ``seconds`` of the lab, in time order."""
    rng = random.Random(seed)
    rows = []
    walks = [0.0] * len(CHANNELS)
    for second in range(seconds):
        day = math.sin(2 * math.pi * (second % 86_400) / 86_400)
        stamps: dict[str, int] = {}  # a device sends its channels together: one time
        for i, (device, channel, _, _, period, decimals, centre, swing, step) in enumerate(
                CHANNELS):
            if second % period:
                continue
            walks[i] += rng.gauss(0, step)
            value = round(centre + swing * day + walks[i], decimals)
            ts = stamps.setdefault(device, START_US + second * 1_000_000
                                   + rng.randrange(50_000))
            rows.append((device, channel, ts, value))
    return rows


def fill_hub(path: Path, rows: list[tuple[str, str, int, float]]) -> int:
    """Write ``rows`` into a fresh hub database as a live pipeline would (a batch a
    second); the number of spans its journal holds."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = ReadingStore(engine)
    ids = {(c[0], c[1]): store.ensure_series(device=c[0], channel=c[1], quantity=c[2],
                                             unit=c[3], site=None).id for c in CHANNELS}
    writer = store.writer()
    try:
        batch: list[tuple[int, int, float, int]] = []
        second = None
        for device, channel, ts, value in rows:
            now = ts // 1_000_000
            if second is not None and now != second and batch:
                writer.write([batch])
                batch = []
            second = now
            batch.append((ids[(device, channel)], ts, value, 0))
        if batch:
            writer.write([batch])
    finally:
        writer.close()
    with engine.connect() as conn:
        spans = int(conn.exec_driver_sql("SELECT count(*) FROM reading_spans").scalar_one())
    engine.dispose()
    return spans


def request_head(batch_id: str, body: bytes) -> bytes:
    """The HTTP request line and headers of a batch's ``PUT``, as the hub sends them."""
    return (f"PUT {BATCH.format(batch_id=batch_id)} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer lhh_{'x' * 43}\r\nUser-Agent: labhub/1.0\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nUpload-Offset: 0\r\n"
            f"Upload-Length: {len(body)}\r\nUpload-Digest: {digest(body)}\r\n"
            "Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\n"
            "Connection: keep-alive\r\n\r\n").encode()


def collect_week(path: Path, budget: int) -> tuple[list[Section], float]:
    """Every readings section of the hub at ``path`` and the CPU seconds it took."""
    engine = make_engine(f"sqlite:///{path}")
    stream = ReadingsStream()
    sections: list[Section] = []
    position: list[int] = []
    cpu = time.process_time()
    with engine.connect() as conn:
        while (section := stream.collect(conn, position, budget)) is not None:
            sections.append(section)
            position = section.to
    cpu = time.process_time() - cpu
    engine.dispose()
    return sections, cpu


def send_throttled(payloads: list[bytes], kbit: int) -> float:
    """Seconds to send ``payloads`` through a loopback socket at ``kbit`` kbit/s."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    total = sum(len(p) for p in payloads)
    received = 0

    def receive() -> None:
        nonlocal received
        conn, _ = server.accept()
        with conn:
            while received < total:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += len(chunk)

    thread = threading.Thread(target=receive)
    thread.start()
    rate = kbit * 1000 / 8  # bytes a second
    piece = 1460  # one TCP segment at a time, paced
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sent = 0
        for payload in payloads:
            for at in range(0, len(payload), piece):
                chunk = payload[at:at + piece]
                due = start + (sent + len(chunk)) / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sock.sendall(chunk)
                sent += len(chunk)
    thread.join()
    server.close()
    elapsed = time.perf_counter() - start
    if received != total:
        raise RuntimeError(f"the receiver got {received} of {total} bytes")
    return elapsed


def compressors(sections: list[Section]) -> list[str]:
    """The same bodies with zlib 6, zlib 9 and lzma: bytes and seconds."""
    bodies = [encode_body(decode(s.data)) for s in sections]
    lines = []
    for name, squeeze in (("zlib 6", lambda b: zlib.compress(b, 6)),
                          ("zlib 9", lambda b: zlib.compress(b, 9)),
                          ("lzma 6", lambda b: lzma.compress(b, preset=6))):
        start = time.process_time()
        size = sum(len(squeeze(b)) for b in bodies)
        lines.append(f"{name}: {size:,} bytes in {time.process_time() - start:.2f} s CPU")
    return lines


def measure(smoke: bool) -> list[str]:
    """This part's lines for ``bench/sync.py``."""
    seconds = 3_600 if smoke else WEEK_S
    budget = Settings().network_batch_bytes
    rows = week_rows(seconds)
    out = [f"[week] {len(rows):,} readings of {seconds / 86_400:.2f} days, "
           f"{len(CHANNELS)} channels at 1-10 s; batches of {budget:,} bytes"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        start = time.perf_counter()
        spans = fill_hub(path, rows)
        out.append(f"[week] hub written in {time.perf_counter() - start:.1f} s: "
                   f"{spans:,} spans in the journal")
        sections, cpu = collect_week(path, budget)
    count = sum(s.count for s in sections)
    data = sum(len(s.data) for s in sections)
    payloads = []
    for s in sections:
        batch_id = str(uuid.uuid4())
        body = pack_batch(batch_id=batch_id, hub_id=str(uuid.uuid4()),
                          made_at_us=START_US, sections=[s])
        payloads.append(request_head(batch_id, body) + body)
    wire = sum(len(p) for p in payloads)
    out.append(f"[week] {len(sections)} batches, {count:,} readings sent "
               f"({count - len(rows):,} twice); codec {data / len(rows):.2f} bytes/reading, "
               f"on the wire {wire / len(rows):.2f} bytes/reading ({wire:,} bytes with "
               "batch containers and PUT headers; target <= 6)")
    out.append(f"[week] hub CPU to collect and encode: {cpu:.2f} s "
               f"({cpu / len(rows) * 1e6:.2f} us/reading)")
    series = [r for s in sections for r in decode(s.data)]
    start = time.process_time()
    encoded = encode(series)
    enc = time.process_time() - start
    start = time.process_time()
    decode(encoded)
    dec = time.process_time() - start
    out.append(f"[week] codec alone on the {len(rows):,} readings in one section: encode "
               f"{enc:.2f} s, decode {dec:.2f} s CPU ({len(encoded) / len(rows):.2f} B/reading)")
    out.append("[week] compressors on the same bodies: " + "; ".join(compressors(sections)))
    elapsed = send_throttled(payloads, LINK_KBIT)
    out.append(f"[week] sent over {LINK_KBIT} kbit/s in {elapsed:.1f} s "
               f"({elapsed / 60:.1f} min; {wire * 8 / LINK_KBIT / 1000:.1f} s at line rate)")
    return out
