"""websockets' client connection, with the exchange's plain data frames read in one tight loop.

websockets parses every frame with generator-based coroutines (a generator per frame, a
``yield from`` per header field and payload, a :class:`~websockets.frames.Frame` and an event
per frame): ~2.5 µs a frame, the largest share of the ingest's read path at Bybit's maximum push
rate. Almost everything Bybit sends is one kind of frame: a complete, unmasked text frame
(``FIN``, no reserved bit, no extension, shorter than 64 kB). :class:`TickerConnection` reads
runs of those itself, from the bytes of each socket read (~0.3 µs a frame), and hands each
payload to :attr:`TickerConnection.on_message` at once: no parser generator, no event, no
``recv()`` future, queue or task wake-up per message.

Only while websockets' parser rests at a frame boundary (it waits for a frame's first byte,
nothing buffered, no fragmented message open) and the connection is open; from the first
byte of any other frame (ping, pong, close, a fragment, a masked or reserved-bit frame, a
length over ``max_size`` or of 64 kB and more) the rest of the read goes to websockets'
own ``data_received``, which decides it exactly as it always did: answers pings, closes with
1002 for a protocol error and 1009 for a frame over ``max_size``, queues fragments for
``recv()``. Reading resumes here once its parser is back at a boundary. A frame cut by the end
of a read is held until the read that completes it (websockets gets it whole, or at the
end of the stream, as it was). Handshake, keepalive pings and their timeout, the closing
handshake, flow control and reconnects are websockets' own, unchanged.

Where :class:`ingest.readhold.ReadHold` holds a connection's reads, :meth:`TickerConnection.hold_reads`
and :meth:`TickerConnection.release_reads` set the socket's receive threshold (``SO_RCVLOWAT``), and
the first read after a release raises it again once the kernel queue is empty.

Whether the parser rests at a boundary is read from its generator: suspended in
``StreamReader.at_eof`` inside ``Protocol.parse``. If a websockets release changes that,
:func:`parser_at_boundary` is never true, every frame takes websockets' own path (correct,
slower), and ``tests/test_ingest_wsread.py`` fails on the pinned version.
"""

from __future__ import annotations

import fcntl
import socket
import sys
import termios
from array import array
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, Protocol, State
from websockets.streams import StreamReader

#: First byte of a complete text or binary frame without reserved bits: FIN + opcode.
_WHOLE: Final = (0x80 | Opcode.TEXT.value, 0x80 | Opcode.BINARY.value)
#: Second byte at most this: unmasked, the payload length in 7 bits or (126) in the next 2 bytes.
_LENGTH_16: Final = 126
_DATA: Final = (Opcode.TEXT, Opcode.BINARY)
#: ``SO_RCVLOWAT`` while held: as high as it goes (the kernel cuts it to half of tcp_rmem's max).
_HOLD_BYTES: Final = 2**31 - 1
_TCP: Final = (socket.AF_INET, socket.AF_INET6)
_PARSE_CODE: Final = Protocol.parse.__code__
_AT_EOF_CODE: Final = StreamReader.at_eof.__code__


def parser_at_boundary(protocol: Protocol) -> bool:
    """Whether websockets' parser waits for the first byte of a frame, with nothing buffered."""
    if protocol.state is not State.OPEN or protocol.current_size is not None or protocol.debug:
        return False
    reader = protocol.reader
    if reader.buffer or reader.eof:
        return False
    frames = getattr(protocol.parser, "gi_yieldfrom", None)  # ClientProtocol.parse -> Protocol.parse
    if frames is None or frames.gi_code is not _PARSE_CODE:
        return False  # still in the handshake, or discard() after a close
    waiting = frames.gi_yieldfrom
    return waiting is not None and waiting.gi_code is _AT_EOF_CODE


class TickerConnection(ClientConnection):
    """websockets' client connection that hands complete data frames to :attr:`on_message` at once."""

    on_message: Callable[[bytes], None] | None = None
    #: Frames read by the loop of :meth:`data_received` (not websockets' parser), for tests and benches.
    frames_read_here = 0
    _fragmented = False  # a fragmented message is in progress: its frames go to the queue
    _held = b""  # the start of a plain data frame that the next read completes
    _synced = False  # websockets' parser was seen at a boundary and has not been fed since
    _limit = 0  # the largest payload read here (max_size), set by _resync
    _hold_socket: Any = None  # the TCP socket whose reads are held (ingest.readhold), else None
    _released = False  # its threshold is down to one byte until its queue is read empty

    def hold_reads(self) -> bool:
        """Let the kernel keep this connection's bytes until :meth:`release_reads`; False: not TCP,
        or not Linux (whose ``setsockopt`` re-checks readiness at once when the threshold drops)."""
        if sys.platform != "linux":
            return False
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.fileno() < 0 or sock.family not in _TCP or sock.type != socket.SOCK_STREAM:
            return False  # not TCP, or closed before its session began
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _HOLD_BYTES)
        self._hold_socket, self._released = sock, False
        return True

    def release_reads(self) -> None:
        """Make what the kernel holds readable now (the event loop reads it on its next turn)."""
        sock = self._hold_socket
        if sock is None or self._released or sock.fileno() < 0:
            return
        self._released = True
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def _rehold(self) -> None:
        """After a released read: hold again once nothing is left queued (else read on)."""
        sock = self._hold_socket
        if sock is None or sock.fileno() < 0:
            return
        queued = array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, queued)
        if queued[0] == 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _HOLD_BYTES)
            self._released = False

    def data_received(self, data: bytes) -> None:
        if self._released:
            self._rehold()
        held = self._held
        if held:  # only ever set while reading here
            data = held + data
            self._held = b""
        handler = self.on_message
        if handler is None or not (self._synced or self._resync()):
            self._synced = False
            super().data_received(data)
            return
        end = len(data)
        limit, whole = self._limit, _WHOLE
        i = read = 0
        cut = False  # the frame at i is a plain data frame that the end of this read cut short
        while i < end:
            if data[i] not in whole:
                break
            if i + 2 > end:
                cut = True
                break
            length = data[i + 1]
            start = i + 2
            if length >= _LENGTH_16:
                if length > _LENGTH_16:
                    break  # masked, or a 64-bit length: websockets decides
                if i + 4 > end:
                    cut = True
                    break
                length = (data[i + 2] << 8) | data[i + 3]
                start = i + 4
            if length > limit:
                break  # over max_size: websockets closes with 1009
            stop = start + length
            if stop > end:
                cut = True
                break
            handler(data[start:stop])
            read += 1
            i = stop
        self.frames_read_here += read
        if cut:
            self._held = data[i:]
        elif i < end:
            self._synced = False
            super().data_received(data[i:] if i else data)

    def eof_received(self) -> None:
        held = self._held
        if held:  # a frame cut by the end of the stream: websockets' verdict, as without this class
            self._held = b""
            self._synced = False
            super().data_received(held)
        super().eof_received()

    def _resync(self) -> bool:
        """Read here from now on if websockets' parser rests at a boundary; sets :attr:`_limit`."""
        protocol = self.protocol
        if not parser_at_boundary(protocol):
            return False
        sizes = [s for s in (protocol.max_message_size, protocol.max_fragment_size) if s is not None]
        self._limit = min(sizes) if sizes else 1 << 62
        self._synced = True
        return True

    def process_event(self, event: Event) -> None:
        """A complete data frame that websockets parsed (after a control frame in the same read,
        say) goes to :attr:`on_message` too; the rest is websockets' own."""
        if type(event) is Frame:
            opcode = event.opcode
            if opcode in _DATA or opcode is Opcode.CONT:
                handler = self.on_message
                if handler is not None and event.fin and not self._fragmented and opcode is not Opcode.CONT:
                    data = event.data
                    handler(data if type(data) is bytes else bytes(data))
                    return
                self._fragmented = not event.fin
        super().process_event(event)
