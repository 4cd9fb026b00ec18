"""The ingest's own read loop for plain data frames (ingest.wsread) against websockets' verdicts.

A real websockets client connects to a raw TCP server on loopback that answers the opening
handshake and then writes exactly the bytes a test gives it, cut where the test says. Frames
built here byte by byte (RFC 6455 section 5.2) cover what the loop reads itself (text and
binary frames, 7- and 16-bit lengths) and every kind it must leave to websockets: pings, pongs,
fragments, masked or reserved-bit frames, 64-bit lengths, frames over ``max_size``, a close.
Some tests hand a socket read's bytes to ``data_received`` directly, as the event loop does,
so that every cut position is tried on one connection.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.utils import accept_key

from ingest.wsread import TickerConnection, parser_at_boundary
from tests.servers import LOOPBACK, free_port
from tests.test_ingest_canonical import LIVE


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, rsv: int = 0, mask: bool = False,
          wide: bool = False) -> bytes:
    """One server-to-client frame; ``wide``: the 64-bit length form, whatever the length."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if wide:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    elif n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    if mask:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each whole frame the client sent, in order.

    Walked frame by frame rather than searched for a header's bytes: a client frame's mask key and
    masked payload are random, so any byte pair turns up in them by chance.
    """
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(data):
        opcode, length, start = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        assert data[i + 1] & 0x80, "a client frame is always masked"
        if length == 126:
            (length,), start = struct.unpack("!H", data[start:start + 2]), start + 2
        elif length == 127:
            (length,), start = struct.unpack("!Q", data[start:start + 8]), start + 8
        key, start = data[start:start + 4], start + 4
        if start + length > len(data):
            break  # the rest has not arrived
        frames.append((opcode, bytes(b ^ key[k % 4] for k, b in enumerate(data[start:start + length]))))
        i = start + length
    return frames


@dataclass
class RawExchange:
    """Answers the handshake, then writes what :meth:`send` is given, as given."""

    greeting_extra: bytes = b""  # written in the same segment as the 101 response
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n"
                     + self.greeting_extra)
        self.writers.append(writer)
        while chunk := await reader.read(65536):
            self.received.extend(chunk)
            if chunk.startswith(b"\x88"):  # the client's close frame: end the TCP connection, as Bybit does
                writer.close()
                break

    async def send(self, *chunks: bytes, pause: float = 0.02) -> None:
        for chunk in chunks:
            self.writers[-1].write(chunk)
            await self.writers[-1].drain()
            await asyncio.sleep(pause)  # each chunk its own socket read, as far as TCP allows


@pytest.fixture
async def raw() -> AsyncIterator[tuple[RawExchange, str]]:
    ex = RawExchange()
    port = free_port()
    server = await asyncio.start_server(ex.handle, LOOPBACK, port)
    try:
        yield ex, f"ws://{LOOPBACK}:{port}/v5/public/option"
    finally:
        for writer in ex.writers:
            writer.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*ex.handlers, return_exceptions=True), 5)


PAYLOADS = [LIVE, b'{"op":"pong"}', LIVE * 3, b""]  # 7-bit, 16-bit and zero lengths


async def opened(url: str, **kwargs: object) -> tuple[TickerConnection, list[bytes]]:
    ws = await connect(url, create_connection=TickerConnection, compression=None, ping_interval=None,
                       close_timeout=0.5, **kwargs)  # type: ignore[arg-type]
    assert isinstance(ws, TickerConnection)
    got: list[bytes] = []
    ws.on_message = got.append
    return ws, got


async def test_the_loop_reads_plain_frames_itself_on_the_pinned_websockets(
        raw: tuple[RawExchange, str]) -> None:
    """If a websockets release moved its parser, every frame would silently take the slow path."""
    ex, url = raw
    ws, got = await opened(url)
    assert parser_at_boundary(ws.protocol)
    await ex.send(*(frame(p) for p in PAYLOADS))
    await ex.send(frame(LIVE, opcode=0x2))
    assert got == [*PAYLOADS, LIVE]
    assert ws.frames_read_here == len(PAYLOADS) + 1
    await ws.close()


async def test_frames_cut_anywhere_arrive_whole_in_order_and_control_frames_stay_websockets(
        raw: tuple[RawExchange, str]) -> None:
    """One stream of every kind, handed over cut at every position and at random ones."""
    ex, url = raw
    ws, got = await opened(url)
    ping = frame(b"hi", opcode=0x9)
    stream = (frame(PAYLOADS[0]) + frame(PAYLOADS[2]) + ping + frame(b"bin", opcode=0x2)
              + frame(b"part1-", fin=False) + frame(b"part2", opcode=0x0)  # a fragmented message
              + frame(PAYLOADS[1]) + frame(b"", opcode=0xA))  # an unsolicited pong
    direct = [PAYLOADS[0], PAYLOADS[2], b"bin", PAYLOADS[1]]
    rng = random.Random(7)
    cuts = [[k] for k in range(1, len(stream))]
    cuts += [sorted(rng.sample(range(1, len(stream)), rng.randint(2, 12))) for _ in range(300)]
    for points in cuts:
        got.clear()
        edges = [0, *points, len(stream)]
        for start, stop in itertools.pairwise(edges):
            ws.data_received(stream[start:stop])
        assert got == direct, points
        assert await asyncio.wait_for(ws.recv(decode=False), 5) == b"part1-part2", points
    assert ws.frames_read_here >= len(direct) * len(cuts) // 2  # most of them read here
    await asyncio.sleep(0.05)
    pongs = [payload for opcode, payload in client_frames(bytes(ex.received)) if opcode == 0xA]
    assert pongs == [b"hi"] * len(cuts)  # one answer per ping, echoing its payload
    assert ws.protocol.state.name == "OPEN"
    await ws.close()


@pytest.mark.parametrize(("bad", "code"), [
    (frame(LIVE, mask=True), 1002),  # a server must not mask
    (frame(LIVE, rsv=0b100), 1002),  # a reserved bit without an extension
    (frame(b"x" * 2000), 1009),  # over max_size
    (frame(b"x" * 1000 + b"y" * 1000, wide=True), 1009),
])
async def test_a_frame_the_loop_does_not_read_gets_websockets_own_verdict(
        raw: tuple[RawExchange, str], bad: bytes, code: int) -> None:
    ex, url = raw
    ws, got = await opened(url, max_size=1500)
    await ex.send(frame(LIVE) + bad[:1], bad[1:] + frame(LIVE))  # held for a byte, then handed on
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert got == [LIVE]  # nothing of or after the bad frame was handed over
    assert ws.protocol.close_sent is not None
    assert ws.protocol.close_sent.code == code


async def test_a_wide_length_frame_within_max_size_is_delivered_by_websockets(
        raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    await ex.send(frame(LIVE, wide=True) + frame(LIVE))
    await ex.send(frame(PAYLOADS[1]))
    assert got == [LIVE, LIVE, PAYLOADS[1]]
    assert ws.frames_read_here >= 1  # reading resumed after websockets' frame
    await ws.close()


async def test_a_frame_cut_by_the_end_of_the_stream_is_an_abnormal_closure(
        raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    await ex.send(frame(LIVE) + frame(LIVE)[:40])
    ex.writers[-1].close()
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert got == [LIVE]
    assert closed.value.rcvd is None  # no close frame: 1006, as websockets reports a cut stream
    # websockets saw the held 40 bytes (a 4-byte header and 36 of the payload), as without the loop
    assert isinstance(ws.protocol.parser_exc, EOFError)
    assert "stream ends after 36 bytes" in str(ws.protocol.parser_exc)


async def test_frames_in_the_handshakes_own_segment_are_delivered_and_reading_resumes(
        raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ex.greeting_extra = frame(LIVE) + frame(PAYLOADS[1])[:5]  # a whole frame and a cut one
    ws, got = await opened(url)
    assert await asyncio.wait_for(ws.recv(decode=False), 5) == LIVE  # before the handler was set
    await ex.send(frame(PAYLOADS[1])[5:], frame(PAYLOADS[2]))
    assert got == [PAYLOADS[1], PAYLOADS[2]]
    assert ws.frames_read_here >= 1
    await ws.close()


async def test_a_close_frame_is_answered_and_nothing_after_it_is_handed_over(
        raw: tuple[RawExchange, str]) -> None:
    ex, url = raw
    ws, got = await opened(url)
    close = frame(struct.pack("!H", 1001) + b"bye", opcode=0x8)
    await ex.send(frame(LIVE) + close + frame(LIVE))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert got == [LIVE]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert ws.protocol.close_sent is not None
    assert ws.protocol.close_sent.code == 1001  # echoed, as websockets does
