"""Where a scan's time goes on its way to the model, for ``bench/bench_scan.py --stages`` and ``--held``: the loader
and the batches ready for the model timed apart (:func:`stages`), and the device path over batches held in memory
(:func:`held_batches`, :func:`overlap`): each step of preparing a batch, the passes alone, both together, and which step
runs beside the passes, and :func:`waits_for_other_streams`: which step waits for the other streams' work;
:func:`gil_share` says how much of Python's lock a piece of work leaves to another thread."""

from __future__ import annotations

import time

from bench.bench_attribution import best_seconds


def stages(model, ds, batch_size: int, workers: int, decode: str, rounds: int, bare_rate: float) -> None:
    """Where a scan's time goes, each beside the bare pass's rate: the loader alone, processes or threads as the scan
    reads (reading files; on the device path each file's bytes and header, on the CPU path decoding and resizing
    too), then the batches as the model gets them (decoded and resized on the device where the scan does that,
    normalised) without the model: each as a rate over the whole run, the seconds to the first batch, and the rate
    after it."""
    import torch

    from interp.datasets.batches import _batches, read_batches, resolve_decode

    mode = resolve_decode(model, decode)
    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def timeline(make) -> str:
        """The whole run's rate, the seconds to the first batch and the rate after it, from the fastest of
        ``rounds`` runs after a warm one."""
        best = None
        for _ in range(rounds + 1):
            sync()
            start, first = time.perf_counter(), None
            for _ in make():
                if first is None:
                    first = time.perf_counter() - start
            sync()
            total = time.perf_counter() - start
            if best is None or total < best[0]:
                best = (total, first or total)
        total, first = best
        after = (len(ds) - batch_size) / (total - first) if total > first and len(ds) > batch_size else float("nan")
        return f"{len(ds) / total:,.0f} (first batch after {first:.2f} s, then {after:,.0f})"

    line = [f"stages ({mode} decoding, {workers} loader workers): bare forward {bare_rate:,.0f} images/s",
            "the loader alone " + timeline(lambda: read_batches(model, ds, ds.items, batch_size, workers, mode)[1]),
            "batches ready for the model " + timeline(lambda: _batches(model, ds, ds.items, batch_size, workers, mode))]
    print("; ".join(line))


def gil_share(work, sync=lambda: None) -> float:
    """How fast a Python thread counts while ``work()`` runs in this one, as a share of its speed alone: near 1 where
    the work lets go of the GIL (native code that releases it, GPU work waited for), low where it holds it (Python,
    or native code that keeps it) and a thread of ours beside it (the model's passes) would wait."""
    import threading

    def loop(stop) -> int:
        k = 0
        while not stop.is_set():
            k += 1
        return k

    stop, counted = threading.Event(), [0]
    timer = threading.Timer(0.3, stop.set)
    start = time.perf_counter()
    timer.start()
    base = loop(stop) / (time.perf_counter() - start)
    stop.clear()
    thread = threading.Thread(target=lambda: counted.__setitem__(0, loop(stop)))
    start = time.perf_counter()
    thread.start()
    work()
    sync()
    stop.set()
    thread.join()
    return counted[0] / (time.perf_counter() - start) / base


def waits_for_other_streams(model, held, prepare, spin_s: float = 0.5) -> None:
    """Whether a step of preparing a batch holds its thread until work on other CUDA streams is done: each step's call
    timed on a stream of its own, alone and then while another stream runs a one-thread kernel that spins for
    ``spin_s`` (it leaves every other multiprocessor free, so only waiting for it can slow the call). A step held about
    as long as the spin waits for other streams (a device-wide synchronisation: ``cudaFree`` or a pinned allocation
    inside a library, a copy on the legacy default stream): in a scan it waits for the model's pass, and preparing and
    passing then take turns whatever the threads and streams. A step near its time alone runs beside the passes."""
    import torch

    from interp.jpeg import CANDIDATES, _on_a_stream_of_its_own, decode_on

    device = model.device
    if device.type != "cuda" or not held:
        return
    own, other = torch.cuda.Stream(device), torch.cuda.Stream(device)
    torch.cuda.synchronize(device)
    with torch.cuda.stream(other):
        start = time.perf_counter()
        torch.cuda._sleep(10**8)
        other.synchronize()
    cycles = int(10**8 * spin_s / (time.perf_counter() - start))

    def held_for(step) -> str:
        try:
            with torch.cuda.stream(own):
                step()  # warm: the decoder's buffers, the allocator's blocks
                torch.cuda.synchronize(device)
                start = time.perf_counter()
                step()
                alone = time.perf_counter() - start
                torch.cuda.synchronize(device)
                with torch.cuda.stream(other):
                    torch.cuda._sleep(cycles)
                start = time.perf_counter()
                step()
                beside = time.perf_counter() - start
                torch.cuda.synchronize(device)
        except Exception as exc:  # noqa: BLE001  (a decoder that cannot decode here: the other steps still print)
            return f"failed ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:100]})"
        verdict = "WAITS for it" if beside - alone > spin_s / 2 else "runs beside it"
        return f"{alone * 1e3:.1f} ms alone, {beside * 1e3:.1f} ms beside the spin: {verdict}"

    (_ids, flat, lengths), _pixels, _failed = held[0]
    data = list(flat.split(lengths))
    line = []
    for name, load in CANDIDATES:
        try:
            decode = _on_a_stream_of_its_own(load())  # as a scan calls it
        except Exception as exc:  # noqa: BLE001  (not installed)
            line.append(f"{name}: not here ({type(exc).__name__})")
            continue
        line.append(f"decoding with {name} " + held_for(lambda decode=decode: decode(data, device)))
    transform = model.transform
    decoded = [im for im in decode_on(data, device) if im is not None]
    pixels = transform.pixels_on_device(decoded)
    x = transform.normalize(pixels)
    line += [f"resizing and cropping {held_for(lambda: transform.pixels_on_device(decoded))}",
             f"normalising {held_for(lambda: transform.normalize(pixels))}",
             f"the whole preparing {held_for(lambda: prepare(held[0]))}",
             f"the model's pass (launched) {held_for(lambda: model.run(x))}"]
    print(f"waiting for other streams ({len(data)} images, another stream spinning {spin_s:.2f} s): " + "; ".join(line))


def held_batches(model, ds, batch_size: int, workers: int, decode: str, rounds: int) -> None:
    """The device path from the loader's batches held in memory (no reading): each step of preparing a batch timed
    alone (decoding, resizing and cropping, normalising), preparing in turn and in a thread of its own, the model's
    passes and scores alone over batches already prepared, and both together as a scan runs them, with the passes on
    the default stream, on a stream of their own, and on one of the highest priority; then :func:`overlap`. First of
    all :func:`waits_for_other_streams`."""
    import contextlib

    import numpy as np
    import torch

    from interp.datasets.batches import device_preparer, read_batches, resolve_decode
    from interp.datasets.rows import score_async
    from interp.jpeg import decode_on
    from interp.runtime import prepared_ahead

    mode = resolve_decode(model, decode)
    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def rate(fn) -> float:
        return len(ds) / best_seconds(fn, rounds)

    if mode != "device":
        print(f"held batches: the scan decodes on the CPU here ({decode}); nothing to time")
        return
    files, loader = read_batches(model, ds, ds.items, batch_size, workers, mode)
    held = list(loader)
    prepare = device_preparer(model, files)
    waits_for_other_streams(model, held, prepare)  # first: seconds, and the likeliest answer to why the two add up
    transform = model.transform
    spent = {"decoding": 0.0, "resizing and cropping": 0.0, "normalising": 0.0}
    for _ in range(rounds):
        for (_ids, flat, lengths), _pixels, _failed in held:
            sync()
            t0 = time.perf_counter()
            decoded = decode_on(list(flat.split(lengths)), model.device)
            sync()
            t1 = time.perf_counter()
            pixels = transform.pixels_on_device(decoded)
            sync()
            t2 = time.perf_counter()
            transform.normalize(pixels)
            sync()
            t3 = time.perf_counter()
            for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                spent[name] += seconds
    per_image = {name: seconds / (rounds * len(ds)) for name, seconds in spent.items()}
    xs = [prepare(batch)[1] for batch in held]
    labels = [np.zeros((len(x), 1), np.int64) for x in xs]

    def passes(batches) -> None:  # as a scan runs them: the next pass launched before this one's scores are read
        waiting = None
        for x, lab in zip(batches, labels, strict=True):
            launched = score_async(model.run(x), lab)
            if waiting is not None:
                waiting.result()
            waiting = launched
        if waiting is not None:
            waiting.result()

    def together() -> None:
        passes(x for _, x, _, _ in prepared_ahead(held, prepare, model.device))

    def own_stream(priority: int = 0) -> None:
        # a lower number is a higher priority: the GPU then schedules the passes' blocks before the preparing ones
        on = torch.cuda.stream(torch.cuda.Stream(model.device, priority=priority)) if cuda else contextlib.nullcontext()
        with on:
            together()

    highest = torch.cuda.Stream.priority_range()[1] if cuda else 0

    line = ["held batches: " + ", ".join(f"{name} {seconds * 1e6:.1f} µs" for name, seconds in per_image.items())
            + " an image, each alone",  # fmt: skip
            f"prepared in turn {rate(lambda: [prepare(b) for b in held]):,.0f} images/s",
            f"in a thread {rate(lambda: list(prepared_ahead(held, prepare, model.device))):,.0f}",
            f"passes and scores alone {rate(lambda: passes(xs)):,.0f}",
            f"both, as a scan {rate(together):,.0f}",
            f"both, the passes on a stream of their own {rate(own_stream):,.0f}",
            f"on one of the highest priority ({highest}) {rate(lambda: own_stream(highest)):,.0f}"]
    print("; ".join(line))
    overlap(model, held, xs, passes, rate, sync, prepare)


def overlap(model, held, xs, passes, rate, sync, prepare) -> None:
    """Which part of preparing a batch runs beside the model's passes, and whether each JPEG decoder lets go of the
    GIL: the passes with a thread decoding only (each decoder), then resizing only (from pictures decoded before),
    each against what in turn (the sum of times) and side by side (the slower alone) would give; and how fast a
    Python thread counts while a decoder works, and while a batch is prepared, as a share of its speed alone
    (:func:`gil_share`)."""
    from interp.jpeg import CANDIDATES, _decoder_on, _on_a_stream_of_its_own
    from interp.runtime import prepared_ahead

    transform, device = model.transform, model.device
    n = sum(len(x) for x in xs)
    alone = rate(lambda: passes(xs))

    def beside(prepare) -> str:
        by_itself = rate(lambda: [prepare(k) for k in range(len(held))])
        both = rate(lambda: passes(x for x in prepared_ahead(range(len(held)), lambda k: (prepare(k), xs[k])[1],
                                                             device)))  # fmt: skip
        return (f"{both:,.0f} images/s (alone {by_itself:,.0f}; in turn would be {1 / (1 / by_itself + 1 / alone):,.0f}"
                f", side by side {min(by_itself, alone):,.0f})")

    line = [f"the passes alone {alone:,.0f} images/s; a Python thread beside preparing counts at "
            f"{gil_share(lambda: [prepare(b) for b in held], sync):.2f} of its speed alone"]
    lengths_of = [(flat, lengths) for (_, flat, lengths), _, _ in held]
    for name, load in CANDIDATES:
        try:
            decode = _on_a_stream_of_its_own(load())  # as a scan calls it
            decode([lengths_of[0][0].split(lengths_of[0][1])[0]], device)
        except Exception as exc:  # noqa: BLE001  (not installed, or cannot decode there)
            line.append(f"{name}: cannot decode here ({type(exc).__name__})")
            continue
        share = gil_share(lambda: [decode(list(f.split(ln)), device) for f, ln in lengths_of], sync)
        line.append(f"{name}: a Python thread beside it counts at {share:.2f} of its speed alone; passes beside it "
                    + beside(lambda k, decode=decode: decode(list(lengths_of[k][0].split(lengths_of[k][1])), device)))
    chosen = _decoder_on(str(device))
    if chosen is not None:
        decoded = [chosen[1](list(f.split(ln)), device) for f, ln in lengths_of]
        sync()
        line.append("resizing, cropping, normalising only (pictures decoded before): passes beside it "
                    + beside(lambda k: transform.normalize(transform.pixels_on_device(decoded[k]))))
        del decoded
    print(f"overlap over {n} images: " + "; ".join(line))
