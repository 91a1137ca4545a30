"""A seekable, read-only file object over an object store, one ranged GET per block.

What a video decoder reads is a few megabytes here and there of a file that may be tens of
gigabytes: each task reads the blocks its time range needs (and the container's index), never
the whole object. While one block is being read, the next one is already being fetched, so a
sequential reader rarely waits for the network. A block shorter than the object's size says
is an error (Changed), never a read that makes no progress.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from motoray.storage.base import CHANGED, Changed

BLOCK_BYTES = 1024 * 1024  # one GET: ~10 ms of transfer at S3 speeds, against ~20 ms latency
CACHED_BLOCKS = 4  # a demuxer jumps between the index and the data: keep a few


class RangedReader(io.RawIOBase):
    """`fetch(first, last)` returns bytes first..last (inclusive) of an object of `size`,
    named `where` in errors; `version` names the version `fetch` reads."""

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        size: int,
        where: str = "",
        version: str | None = None,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        super().__init__()
        self._fetch, self._size, self._block = fetch, size, block_bytes
        self.where, self.version = where, version
        self._position = 0
        self._last = -2  # the block read last: reading ahead only once reads are sequential
        self._blocks: OrderedDict[int, Future[bytes]] = OrderedDict()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ranged-read")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self._size:
            index, offset = divmod(self._position, self._block)
            data = self._block_data(index)
            n = min(len(view) - done, len(data) - offset)
            view[done : done + n] = data[offset : offset + n]
            done += n
            self._position += n
        return done

    def _block_data(self, index: int) -> bytes:
        data = self._request(index).result()
        expected = min(self._block, self._size - index * self._block)
        if len(data) != expected:
            raise Changed(
                f"{CHANGED}: {self.where} gave {len(data)} bytes at offset "
                f"{index * self._block} where {expected} were due (the object is "
                f"{self._size} bytes)"
            )
        sequential = index == self._last + 1
        if sequential and (index + 1) * self._block < self._size:
            self._request(index + 1)  # reading on: the next block is likely next
        self._last = index
        return data

    def _request(self, index: int) -> Future[bytes]:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        first = index * self._block
        last = min(first + self._block, self._size) - 1
        future = self._blocks[index] = self._pool.submit(self._fetch, first, last)
        while len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return future

    def close(self) -> None:
        if not self.closed:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._blocks.clear()
        super().close()
