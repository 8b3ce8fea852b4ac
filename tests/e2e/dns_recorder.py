"""A DNS server that answers nothing: it logs each query's name and refuses it.

``python dns_recorder.py LOG`` listens on 127.0.0.1:53 (UDP), appends ``<qtype> <name>``
to LOG for every query (one line each, flushed), answers ``REFUSED`` (RCODE 5) at once so
no resolver waits, and prints ``ready`` when it listens. Run it inside a network namespace
whose ``resolv.conf`` names 127.0.0.1 (``test_no_lookups.py``): every lookup a process in
that namespace makes ends up in LOG. Standard library only.
"""

from __future__ import annotations

import socket
import struct
import sys

REFUSED = 5
HEADER_BYTES = 12


def question(packet: bytes) -> tuple[str, int, int]:
    """(query name, query type, offset just past the question) of a DNS query packet
    (RFC 1035 section 4.1; queries carry no compressed names)."""
    offset, labels = HEADER_BYTES, []
    while offset < len(packet) and packet[offset]:
        size = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + size].decode("ascii", "replace"))
        offset += 1 + size
    offset += 1  # the root label
    qtype = struct.unpack("!H", packet[offset : offset + 2])[0] if offset + 2 <= len(packet) else 0
    return ".".join(labels), qtype, offset + 4


def refusal(packet: bytes, question_end: int) -> bytes:
    """The REFUSED answer to ``packet``: same id and question, no records."""
    flags = struct.unpack("!H", packet[2:4])[0]
    answer_flags = 0x8000 | (flags & 0x7900) | REFUSED  # QR, the opcode and RD echoed
    counts = struct.pack("!HHHH", 1, 0, 0, 0)
    return packet[:2] + struct.pack("!H", answer_flags) + counts + packet[HEADER_BYTES:question_end]


def main(log_path: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    with open(log_path, "a", buffering=1) as log:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while True:
            packet, peer = sock.recvfrom(4096)
            if len(packet) < HEADER_BYTES:
                continue
            name, qtype, end = question(packet)
            log.write(f"{qtype} {name}\n")
            sock.sendto(refusal(packet, end), peer)


if __name__ == "__main__":
    main(sys.argv[1])
