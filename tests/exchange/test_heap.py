"""A serving process settles its heap once built: what it holds is never walked again, young
collections are spaced out, and cycles that requests leave are still collected."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import gc, weakref
    from exchange import heap
    from exchange.config import Settings
    from exchange.main import create_app

    create_app(Settings(data_dir={data_dir!r}, secret_key="k" * 40))
    before = gc.get_freeze_count()
    heap.settle()
    frozen, threshold = gc.get_freeze_count(), gc.get_threshold()

    class Node:
        pass

    node = Node()
    node.me = node  # a cycle, as a request may leave one
    gone = weakref.ref(node)
    del node
    for _ in range(heap.YOUNG_THRESHOLD * 3):
        [[]]  # net allocations reach the young threshold
    spare = [[] for _ in range(heap.YOUNG_THRESHOLD * 2)]
    print(before, frozen, threshold[0], gone() is None)
    """
)


def test_a_settled_server_freezes_its_app_and_still_collects_cycles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(data_dir=str(tmp_path))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    before, frozen, young, collected = int(out[0]), int(out[1]), int(out[2]), out[3]
    assert before == 0 and frozen > 10_000  # the app and its imports
    assert young == 20_000
    assert collected == "True"


def test_a_worker_process_app_is_settled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`exchange serve --workers N` builds each worker's app with uvicorn's factory."""
    probe = (
        "import gc; from exchange.cli import lifecycle; lifecycle.worker_app(); print(gc.get_freeze_count())"
    )
    env = {**os.environ, "EXCHANGE_DATA_DIR": str(tmp_path), "EXCHANGE_SECRET_KEY": "k" * 40}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120, env=env
    )
    assert int(out.stdout.split()[-1]) > 10_000


def test_serve_settles_the_heap_of_its_one_process() -> None:
    """The single-process `exchange serve` runs uvicorn in the foreground: its source says it."""
    import inspect

    from exchange.cli import lifecycle

    assert "heap.settle()" in inspect.getsource(lifecycle.cmd_serve)
