"""JPEG decoders on this machine, side by side: which of them decodes where, how far its pixels are from Pillow's, and
how fast it decodes a batch, against Pillow in one thread per core.

    python bench/bench_jpeg.py [--images 1024] [--batch-size 256] [--rounds 3]

For every device (the CPU, and the GPU when there is one) and every decoder :mod:`interp.jpeg` knows: whether it
loads and decodes there (the reason when not, which a scan only logs at INFO); its mean distance from Pillow's
pixels on the small test JPEG the scan tries first, and on ImageNet-sized photos, decoded and then resized and cropped
for a model as a scan does (the scan's tolerance: a mean of 1 grey level, no pixel off by more than 8); and its
images per second on 500×375 photos (quality 90, 4:2:0 chroma) in batches, the bytes already in memory.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import best_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    import interp
    from interp.jpeg import CANDIDATES, _on_a_stream_of_its_own, _probe, decoder_name

    photos = [interp.load_sample(s).image for s in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "horse")]
    blobs = []
    for i in range(args.images):
        buf = io.BytesIO()
        photos[i % len(photos)].resize((500, 375)).save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    pillow = [torch.from_numpy(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).copy()).permute(2, 0, 1)
              for b in blobs[: len(photos)]]  # fmt: skip
    model = interp.load_model("efficientnet_lite0", device="cpu")
    expected = torch.stack([model.pixels(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs[: len(photos)]])

    def as_tensors(data):
        return [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in data]

    def by_pillow(b: bytes):
        return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))

    import torchvision

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}{gpu}; {len(blobs)} JPEGs 500×375")
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        took = best_seconds(lambda: list(pool.map(by_pillow, blobs)), args.rounds)
    print(f"Pillow, {os.cpu_count()} threads: {len(blobs) / took:8.0f} images/s")
    probe_blob, probe_expected = _probe()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print(f"{device}: the scan uses {decoder_name(device)}")
        for name, load in CANDIDATES:
            try:
                decode = _on_a_stream_of_its_own(load())  # as a scan calls it
                got = decode(as_tensors([probe_blob]), torch.device(device))[0]
            except Exception as exc:  # what the scan's probe logs at INFO
                print(f"  {name}: cannot decode on {device}: {exc!r}"[:600])
                continue
            probe_apart = (got.cpu().int() - probe_expected.int()).abs().float().mean().item()
            blob420, expected420 = _probe(2)
            got420 = decode(as_tensors([blob420]), torch.device(device))[0]
            apart420 = (got420.cpu().int() - expected420.int()).abs().float().mean().item()
            decoded = decode(as_tensors(blobs[: len(photos)]), torch.device(device))
            raw = max((d.cpu().int() - p.int()).abs().float().mean().item()
                      for d, p in zip(decoded, pillow, strict=True))  # fmt: skip
            inputs = (model.transform.pixels_on_device([d.to(device) for d in decoded]).cpu().int()
                      - expected.int()).abs().float()  # fmt: skip
            chunks = [as_tensors(blobs[i : i + args.batch_size]) for i in range(0, len(blobs), args.batch_size)]
            took = best_seconds(lambda d=decode: [d(c, torch.device(device)) for c in chunks], args.rounds)
            print(f"  {name}: test JPEG {probe_apart:.2f} levels from Pillow (the scan accepts ≤ 4; with 4:2:0 "
                  f"chroma {apart420:.2f}); photos decoded "
                  f"≤ {raw:.2f} (mean of the worst); resized for a model mean {inputs.mean():.3f}, max "
                  f"{inputs.max():.0f}; {len(blobs) / took:8.0f} images/s in batches of {args.batch_size}")  # fmt: skip


if __name__ == "__main__":
    main()
