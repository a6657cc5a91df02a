"""Start-up objects are kept out of later garbage collections (gc.freeze)."""

from __future__ import annotations

import gc

from qbridge.service.lifecycle import freeze_startup_heap


def test_start_up_objects_are_frozen_and_later_ones_are_collected() -> None:
    try:
        before = [[i] for i in range(1000)]
        frozen = freeze_startup_heap()
        assert frozen >= 1000
        tracked = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in tracked for o in before)  # frozen: not walked any more

        class Cycle:
            pass

        a, b = Cycle(), Cycle()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2  # garbage made after start-up is still collected
    finally:
        gc.unfreeze()
