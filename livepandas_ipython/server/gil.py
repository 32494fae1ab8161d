"""``SwitchInterval``: a short GIL switch interval while servers answer calls, the usual one otherwise.

A server thread in a kernel shares the GIL with the cell being run. When a CPU-bound cell holds
it, a thread that wants it waits out the interpreter's *switch interval* (``sys.setswitchinterval``,
5 ms by default) before the cell is made to let go, and a request needs the GIL several times
(reading, calling, writing, each socket operation releases and retakes it). So while the cell
runs, every request takes many milliseconds, and a handful of connections make tens of them.

A shorter interval fixes that, but it is process-wide: it also makes the kernel's own background
threads interrupt the cell more often, a few per cent of its speed even when no request comes.
So the interval is lowered only while calls arrive: the first call lowers it (that call still
waits out one usual interval), and once ``idle_after`` seconds pass without a call, the usual
interval comes back. ``activity()`` is what servers call for each call, on their loop thread.
"""

import sys

__all__ = ["SwitchInterval"]


class SwitchInterval:
    """Lower ``sys.setswitchinterval`` to *busy* seconds while calls arrive (see the module docstring).

    Parameters
    ----------
    busy : float
        The switch interval while calls arrive, in seconds.
    loop : asyncio loop
        The loop of the servers that call :meth:`activity` (its timer restores the interval).
    idle_after : float
        Seconds without a call after which the interval in force before is restored.
    """

    def __init__(self, busy, loop, idle_after=0.5):
        if not busy > 0:
            raise ValueError(f"the busy switch interval must be a positive number of seconds, not {busy!r}")
        self.busy = busy
        self.idle_after = idle_after
        self.loop = loop
        self._saved = None  # the interval to restore, while lowered
        self._calls = 0
        self._seen = 0
        self._timer = None
        self._closed = False

    def activity(self):
        """One more call (on the loop thread): lower the interval if it is not already."""
        self._calls += 1
        if self._saved is None and not self._closed:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(self.busy)
            self._seen = self._calls
            self._timer = self.loop.call_later(self.idle_after, self._check)

    def _check(self):
        if self._saved is None:
            return
        if self._calls != self._seen:  # calls came in the last idle_after seconds
            self._seen = self._calls
            self._timer = self.loop.call_later(self.idle_after, self._check)
        else:
            self._restore()

    def _restore(self):
        saved, self._saved = self._saved, None
        if saved is not None:
            sys.setswitchinterval(saved)

    def close(self):
        """Restore the interval now and stop lowering it (from any thread). Idempotent."""
        self._closed = True  # later calls (servers hold activity() until they stop) change nothing
        self._restore()
        timer, self._timer = self._timer, None
        if timer is not None:
            try:
                self.loop.call_soon_threadsafe(timer.cancel)
            except RuntimeError:  # the loop has closed
                pass
