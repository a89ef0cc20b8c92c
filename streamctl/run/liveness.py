"""Early sign of a hung ingest: ffmpeg's TCP send queue grows and never drains.

When the ingest stops reading, ffmpeg's writes do not block at once: first the socket buffers fill, and
for that long (measured ~5 s at 4.4 Mbps on loopback) `out_time_us` keeps advancing. The kernel's send
queue for the connection shows it from the first second: it never shrinks and grows by what ffmpeg
sends. A healthy ingest, however far away, keeps ACKing, so its queue shrinks now and then and cannot
grow by two whole seconds of media within the window (a brief network hiccup delays ACKs for less).
That is the rule below.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections import deque
from collections.abc import Iterator

_SOCKET = re.compile(r"socket:\[(\d+)\]")


class BacklogWatch:
    """Feeds on (time, send-queue bytes) samples; `hung` once the queue only grew for WINDOW seconds by
    more than GROWTH_SECONDS' worth of the stream's bytes."""

    growth_seconds = 2.0

    def __init__(self, window: float = 4.0, min_growth: int = 64 * 1024) -> None:
        self.window = window
        self.min_growth = min_growth
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, queued: int | None) -> None:
        if queued is None:
            self._samples.clear()
            return
        if self._samples and queued < self._samples[-1][1]:
            self._samples.clear()  # it drained: the ingest is reading
        self._samples.append((now, queued))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def hung(self, bytes_per_second: float) -> tuple[float, int] | None:
        """(seconds, bytes) the queue grew without draining, when that marks a hung ingest."""
        if len(self._samples) < 2 or bytes_per_second <= 0:
            return None  # without the stream's rate there is no telling a backlog from in-flight data
        (t0, q0), (t1, q1) = self._samples[0], self._samples[-1]
        growth = q1 - q0
        if t1 - t0 >= self.window and growth >= max(self.min_growth, self.growth_seconds * bytes_per_second):
            return t1 - t0, growth
        return None


class SendQueue:
    """Bytes in the send queues of a process's established TCP connections, None if unknown.

    Reading /proc/net/tcp costs ~3 ms of kernel time whatever the number of sockets (the kernel walks
    its whole table), once a second: two thirds of the supervisor's CPU. So the connection is found
    once (its socket inodes from /proc/PID/fd, matched in one sock_diag dump, the netlink interface
    `ss` uses, no privileges needed), and then looked up by its exact address and cookie: ~7 us each.
    Where netlink is unavailable (a restricted sandbox) it falls back to /proc/net/tcp.
    """

    def __init__(self) -> None:
        self._nl: socket.socket | None = None
        self._netlink = True
        self._pid: int | None = None
        self._ids: list[tuple[int, bytes]] = []  # (family, inet_diag_sockid) of the pid's connections
        self._seq = 0

    def __call__(self, pid: int) -> int | None:
        if pid != self._pid:
            self._pid, self._ids = pid, []
        if self._netlink:
            try:
                return self._by_netlink(pid)
            except OSError:
                self._netlink = False  # not permitted here: the slow way from now on
                self.close()
        return proc_send_queue(pid)

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def _by_netlink(self, pid: int) -> int | None:
        if not self._ids:
            inodes = socket_inodes(pid)
            if not inodes:
                return None
            self._ids = [(fam, sid) for fam, sid, _, ino in self._dump() if ino in inodes]
            if not self._ids:
                return None  # not connected yet
        total = 0
        for fam, sid in self._ids:
            queued = self._lookup(fam, sid)
            if queued is None:  # that connection is gone: find them again next time
                self._ids = []
                return None
            total += queued
        return total

    def _socket(self) -> socket.socket:
        if self._nl is None:
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
        return self._nl

    def _request(self, family: int, sockid: bytes, dump: bool) -> int:
        self._seq += 1
        body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _ESTABLISHED if dump else 0xFFFFFFFF)
        flags = _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
        size = 16 + len(body) + len(sockid)
        header = struct.pack("=IHHII", size, _SOCK_DIAG_BY_FAMILY, flags, self._seq, 0)
        self._socket().send(header + body + sockid)
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes, int, int] | None]:
        """(family, sockid, send queue, inode) per reply to request SEQ; None for an error reply. The
        kernel answers before send() returns, so nothing here waits."""
        nl = self._socket()
        while True:
            try:
                data = nl.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            off = 0
            while off + 16 <= len(data):
                length, kind, _, got, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    return
                if got == seq:
                    if kind == _NLMSG_DONE:
                        return
                    if kind == _NLMSG_ERROR:
                        yield None
                        return
                    if kind == _SOCK_DIAG_BY_FAMILY and length >= 16 + 72:
                        family = data[off + 16]
                        wqueue, inode = struct.unpack_from("=I4xI", data, off + 16 + 60)
                        yield family, data[off + 20 : off + 68], wqueue, inode
                off += (length + 3) & ~3

    def _dump(self) -> list[tuple[int, bytes, int, int]]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            out += [r for r in self._replies(self._request(family, bytes(48), dump=True)) if r is not None]
        return out

    def _lookup(self, family: int, sockid: bytes) -> int | None:
        for r in self._replies(self._request(family, sockid, dump=False)):
            return None if r is None else r[2]
        return None


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_ESTABLISHED = 1 << 1  # TCP_ESTABLISHED = 1, as a state mask


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            m = _SOCKET.match(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def proc_send_queue(pid: int) -> int | None:
    """SendQueue's fallback: the same figure from /proc/net/tcp{,6}."""
    inodes = socket_inodes(pid)
    if not inodes:
        return None
    total, found = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "01" and int(fields[9]) in inodes:  # ESTABLISHED
                        total += int(fields[4].split(":")[0], 16)
                        found = True
        except OSError:
            continue
    return total if found else None
