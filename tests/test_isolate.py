"""The isolation pass against a simulated energy counter whose power per layer is known.

The layers here are spin modules: each call busies the CPU for a fixed time and tells the counter
beforehand that it draws a fixed power above idle meanwhile, so the true energy per execution is
power x time.  The counter publishes its integral every ``period_s`` in 1 mJ steps, as NVML does.
"""

from __future__ import annotations

import json

import pytest

from jetpower.timebase import monotonic_ns
from jetpower.worker import isolate
from jetpower.worker._replay import HostUnit
from jetpower.worker.energy import CounterError, SimulatedCounter

torch = pytest.importorskip("torch")

#: (name, busy us, W above idle): true energies 6000, 6000 and 3000 uJ per execution
LAYERS = (("a", 300, 20.0), ("b", 150, 40.0), ("c", 600, 5.0))


class Spin:
    """A layer that is busy for ``us`` at ``watts`` above idle, and says so to the counter."""

    def __init__(self, counter: SimulatedCounter, name: str, us: int, watts: float) -> None:
        self.counter, self.name, self.ns, self.watts = counter, name, us * 1000, watts

    def __call__(self) -> None:
        t0 = monotonic_ns()
        t1 = t0 + self.ns
        self.counter.add_busy(t0, t1, self.watts, self.name)  # before: the counter is exact
        while monotonic_ns() < t1:
            pass


def _pass(counter, settings, layers=LAYERS, per_launch=5):
    items = [
        isolate.Item(n, HostUnit(n, Spin(counter, n, us, w), per_launch, "layer"), "layer")
        for n, us, w in layers
    ]
    idle = isolate.Item(isolate.IDLE, HostUnit(isolate.IDLE, None, 0, "idle", 0.002), "idle")
    p = isolate.Pass(counter, settings, items, idle)
    p.run()
    return p, p.document()


def _settings(**kw):
    base = {
        "precision": 0.03,
        "max_seconds": 8.0,
        "repetitions": 4,
        "periods": 3,
        "settle_s": 0.004,
        "chunk_s": 0.002,
    }
    return isolate.Settings(**(base | kw))


def test_known_energies_within_their_intervals():
    """Over 5 seeds, each layer's energy comes back within 5 % and its 95 % interval covers the
    truth for at least 13 of the 15 (layer, seed) pairs."""
    covered = total = 0
    for seed in range(5):
        counter = SimulatedCounter(idle_w=30.0, period_s=0.01)
        _, doc = _pass(counter, _settings(seed=seed))
        for row in doc["layers"]:
            truth = counter.truth_uj(row["layer"])
            lo, hi = row["energy_ci_uj"]
            assert abs(row["energy_uj"] - truth) < 0.05 * truth, (seed, row, truth)
            covered += lo <= truth <= hi
            total += 1
        assert doc["simulated"] is True and doc["method"] == "isolated"
    assert covered >= 13, f"{covered} of {total} intervals cover the truth"


def test_drifting_idle_is_subtracted_over_the_same_time():
    """An idle power rising 10 W/s is tracked by the interleaved idle blocks: each block's idle
    is the counter's idle at that time, and the energies stay right; the first idle alone would
    have made the last round wrong by far more."""
    counter = SimulatedCounter(idle_w=30.0, idle_drift_w_per_s=10.0, period_s=0.01)
    p, doc = _pass(counter, _settings(seed=1, precision=0.5))
    for item in p.items:
        for b in item.blocks:
            mid = (b.t_begin_ns + b.t_end_ns) // 2
            assert abs(b.idle_w - counter.idle_w_at(mid)) < 0.5
    first_idle = p.idle.blocks[0].idle_w
    for item, row in zip(p.items, doc["layers"], strict=True):
        truth = counter.truth_uj(item.name)
        assert abs(row["energy_uj"] - truth) < 0.06 * truth
        last = item.blocks[-1]
        naive = (last.de_uj - first_idle * 1e6 * last.dt_s) / last.in_window
        assert abs(naive - truth) > 0.15 * truth


def test_rounds_interleave_every_layer_between_idle_blocks():
    """Each round is an idle block, then every layer once in a fresh order; rounds differ."""
    counter = SimulatedCounter(idle_w=30.0, period_s=0.005)
    layers = (("a", 100, 10.0), ("b", 100, 10.0), ("c", 100, 10.0), ("d", 100, 10.0))
    p, doc = _pass(counter, _settings(repetitions=4, precision=1.0, periods=2), layers)
    order = [b["item"] for b in doc["blocks"]]
    assert order[-1] == isolate.IDLE
    rounds = []
    cur: list[str] = []
    for name in order[:-1]:
        if name == isolate.IDLE:
            if cur:
                rounds.append(cur)
            cur = []
        else:
            cur.append(name)
    rounds.append(cur)
    assert len(rounds) == p.rounds >= 4
    for r in rounds[:4]:
        assert sorted(r) == ["a", "b", "c", "d"]
    assert len({tuple(r) for r in rounds[:4]}) > 1


def test_time_cap_truncates_and_says_so():
    """A cap too short for the asked repetitions stops the pass early, flagged with the reason."""
    counter = SimulatedCounter(idle_w=30.0, period_s=0.01)
    _, doc = _pass(counter, _settings(max_seconds=0.6, repetitions=50))
    assert doc["pass"]["truncated"] is True
    assert "time cap" in doc["pass"]["reason"]
    assert doc["pass"]["duration_s"] < 1.5
    assert all(1 <= row["repetitions"] < 50 for row in doc["layers"])


def test_counter_that_never_changes_is_a_clear_error():
    """A counter stuck at one value fails the pass with a message naming the counter."""

    class Stuck(SimulatedCounter):
        def read_uj(self) -> int:
            return 7

    with pytest.raises(CounterError, match="changed 0 times"):
        _pass(Stuck(), _settings(counter_timeout_s=0.3))


def test_document_is_json_with_every_field():
    """The document serialises to JSON and names method, counter, settings, window rule, check."""
    counter = SimulatedCounter(
        idle_w=30.0, period_s=0.01, conditions_of=lambda s: {"temperature_c": 40 + s}
    )
    _, doc = _pass(counter, _settings(repetitions=2, precision=1.0))
    text = json.dumps(doc)
    back = json.loads(text)
    row = back["layers"][0]
    assert set(row) >= {
        "layer",
        "energy_uj",
        "energy_ci_uj",
        "replays",
        "repetitions",
        "graph_used",
        "duration_s",
        "idle_w",
        "conditions",
        "exec_time_us",
    }
    assert row["graph_used"] is False and row["replays"] > 0
    lo, hi = row["conditions"]["temperature_c"]
    assert 40 <= lo <= hi
    assert back["counter"]["simulated"] is True and back["window_rule"]
    assert back["check"]["sum_layers_uj"] == pytest.approx(
        sum(r["energy_uj"] for r in back["layers"])
    )


def test_t_quantiles():
    """The Student t table matches known values and approaches the normal quantile."""
    assert isolate.t975(1) == pytest.approx(12.706)
    assert isolate.t975(4) == pytest.approx(2.776)
    assert isolate.t975(60) == pytest.approx(2.000, abs=0.002)
    assert isolate.t975(0) == float("inf")
