"""Streaming: a generator's chunks reach the view as they are produced."""

import time


def livepandas_progress(steps: int = 10, delay: float = 0.1):
    """Work through `steps` steps, reporting each one; returns a summary."""
    for i in range(1, steps + 1):
        time.sleep(delay)
        yield {"step": i, "of": steps, "percent": round(100 * i / steps)}
    return f"done {steps} steps"


async def livepandas_countdown(start: int = 5, delay: float = 0.05):
    """An async generator: counts down on the server's loop."""
    import asyncio

    for i in range(start, -1, -1):
        await asyncio.sleep(delay)
        yield i
