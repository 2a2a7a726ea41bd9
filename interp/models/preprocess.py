"""The model's eval preprocessing, as timm builds it from the data config, with less resampling work.

timm's eval transform resizes the shorter side with Pillow, then crops the centre; the resize is the dearest step
of loading an image. Bilinear and bicubic filters (every model of the spec table) run here in torch's ``uint8``
antialiased resize, Pillow's algorithm vectorised in fixed point: 0.4 ms for a 500×375 photo on one core, against
2.2 ms for timm's resize then crop. Its weights round differently from Pillow's: on the spec table's data configs
and 9 image sizes, at most 2 grey levels apart from timm's pixels, in at most 1% of the values with bicubic filters
(0.35% on a 500×375 photo), 3% with the bilinear one; the real Lite0's logits moved by at most 0.045 (median 0.012)
on 40 photos, and only a near tie (37.30% against 37.18%) changed its top class. Other filters resample, in
Pillow, only the box of the source that the crop keeps (1.25 ms, within 2 levels in at most 0.3% of values).
Normalising in one multiply-add replaces ``ToTensor`` and ``Normalize``.

Everything is read from the transform timm built, never re-derived from the config; a pipeline of any other shape
(squash or border crop modes, crops larger than the resized image, tensors as input) runs timm's own transform.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import _compute_resized_output_size, pil_modes_mapping

from interp.images import LoadedImage, image_digest


class CentreCropTransform:
    """``Resize(shorter side) → CenterCrop → ToTensor → Normalize`` on PIL images, resized by torch (bilinear,
    bicubic) or over the crop's box (other filters). Picklable (data-loader workers receive it)."""

    def __init__(self, reference: T.Compose, size: int, crop: tuple[int, int], resample: int, mean, std) -> None:
        self.reference = reference
        self.size, self.crop, self.resample = size, crop, resample
        std = np.asarray(std, dtype=np.float32)
        self.scale = torch.from_numpy(1.0 / (255.0 * std)).view(-1, 1, 1)
        self.shift = torch.from_numpy(np.asarray(mean, dtype=np.float32) / std).view(-1, 1, 1)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict:
        """Pickled for data-loader workers without the constants kept on devices (a GPU's tensors stay here)."""
        return {**self.__dict__, "_constants": {}}

    def __call__(self, image: Any) -> torch.Tensor:
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            return self.reference(image)
        pixels = self._crop_pixels(image)
        return self.reference(image) if pixels is None else self.normalize(pixels)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The RGB image resized and cropped as ``__call__`` does, not yet normalised: ``(3, H, W)`` ``uint8``, a
        quarter of the float tensor's bytes to move to a GPU. Where the crop is larger than the resized image, timm's
        own resize and (padding) crop give the pixels."""
        pixels = self._crop_pixels(image)
        if pixels is not None:
            return pixels
        resize, crop = self.reference.transforms[:2]
        return _channels_first(np.asarray(crop(resize(image))))

    def resized(self, image: Image.Image) -> Image.Image | None:
        """The RGB picture with its shorter side at :attr:`size`, resized exactly as :meth:`pixels` resizes it, so
        that :meth:`pixels` (and ``__call__``) of the result are those of ``image`` bit for bit: a photo of
        1024×768 held for EfficientNet-Lite0's 256 px resize takes a ninth of the bytes. ``None`` where
        :meth:`pixels` does not resize the whole picture in torch (other filters, crops larger than the resized
        image, other modes) or where the picture is not larger than that size already."""
        if not isinstance(image, Image.Image) or image.mode != "RGB" or self.resample not in _TORCH_FILTERS:
            return None
        w, h = image.size
        new_h, new_w, _, _ = self._placement(h, w)
        if self.crop[0] > new_h or self.crop[1] > new_w or new_h * new_w >= h * w:
            return None
        rgb = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        return Image.fromarray(self._resized(rgb, new_h, new_w)[0].permute(1, 2, 0).numpy())

    def pixels_of(self, rgb: torch.Tensor) -> torch.Tensor:
        """:meth:`pixels` for a picture already decoded to a ``(3, H, W)`` ``uint8`` RGB tensor on the CPU (a JPEG
        decoded by :func:`interp.jpeg.decoder`, which lets go of the GIL where Pillow's decoding holds it in part):
        the same pixels as :meth:`pixels` of that picture as a PIL image."""
        h, w = rgb.shape[-2:]
        new_h, new_w, top, left = self._placement(h, w)
        if self.resample in _TORCH_FILTERS and self.crop[0] <= new_h and self.crop[1] <= new_w:
            return self._torch_pixels(rgb[None], new_h, new_w, top, left)
        return self.pixels(Image.fromarray(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy())))

    def pixels_on_device(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``uint8`` RGB images ``(3, h, w)`` of any sizes, on one device (a GPU: decoded there, or copied whole), as
        :meth:`pixels` gives them: ``(N, 3, H, W)`` ``uint8`` on that device, in the order given.

        Resizing runs as Pillow does it: widths then heights, each pass rounded to whole grey levels, with the same
        filter (torch's antialiased resize uses Pillow's taps); images of one size are resized together. Measured
        against timm's pixels on the spec table's data configs and 9 image sizes: at most 2 grey levels apart, in at
        most 0.9% of the values with bicubic filters (0.02% on a 500×375 photo), 12% with the bilinear one (one
        level: Pillow's bilinear rounds in fixed point). Resizing in one float pass instead differed in 16-21% of
        values, up to 11 levels. Crops larger than the resized image are not handled here
        (:attr:`pixels_on_device_ok`)."""
        if not images:
            return torch.empty((0, 3, *self.crop), dtype=torch.uint8)
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for shape, members in groups.items():
            x = torch.stack([images[i] for i in members]) if len(members) > 1 else images[members[0]][None]
            resized = self._resize_crop(x)
            for j, i in enumerate(members):
                out[i] = resized[j]
        return torch.stack(out)  # type: ignore[arg-type]

    @property
    def pixels_on_device_ok(self) -> bool:
        """Whether :meth:`pixels_on_device` applies: the crop fits inside every resized image (the shorter side is
        resized to ``size``), so no padding is needed."""
        return max(self.crop) <= self.size

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        mode = self.reference.transforms[0].interpolation
        h, w = x.shape[-2:]
        new_h, new_w, top, left = self._placement(h, w)
        crop_h, crop_w = self.crop
        x = x.float()
        if new_w != w:
            x = F.resize(x, [h, new_w], interpolation=mode, antialias=True).round_().clamp_(0, 255)
        x = x[..., left : left + crop_w]  # the columns outside the crop are thrown away: the second pass skips them
        if new_h != h:
            x = F.resize(x, [new_h, crop_w], interpolation=mode, antialias=True).round_().clamp_(0, 255)
        return x[..., top : top + crop_h, :].to(torch.uint8)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``uint8`` pixels ``(..., 3, H, W)`` from :meth:`pixels` as normalised ``float32``, on ``x``'s device: the
        same two rounded operations as ``__call__``, so equal bit for bit on a CPU and on a GPU. The two constants are
        copied to a device once, not per batch (each copy from pageable memory made the thread wait for the work
        queued before it on its stream: on a scan's preparing thread, the decoding and resizing of that batch)."""
        if x.device.type == "cpu":
            scale, shift = self.scale, self.shift
        else:
            kept = self._constants.get(x.device)
            if kept is None:  # two threads may both copy them the first time: the same values either way
                kept = self._constants[x.device] = (self.scale.to(x.device), self.shift.to(x.device))
            scale, shift = kept
        return x.float().mul_(scale).sub_(shift)

    def _crop_pixels(self, image: Image.Image) -> torch.Tensor | None:
        """The crop's ``uint8`` pixels, ``None`` where the crop is larger than the resized image (torchvision pads
        such crops). Bilinear and bicubic filters run in torch's ``uint8`` antialiased resize (Pillow's algorithm, in
        vectorised fixed point: 0.4 ms for a 500×375 photo on one core, against 1.25 ms for Pillow's resize of the
        crop's box alone and 2.2 ms for timm's resize then crop); other filters in Pillow, over the crop's box."""
        w, h = image.size
        new_h, new_w, top, left = self._placement(h, w)
        if self.crop[0] > new_h or self.crop[1] > new_w:
            return None
        if self.resample in _TORCH_FILTERS and image.mode == "RGB":
            # The (H, W, 3) array seen as (1, 3, H, W) channels-last, the layout torch's vectorised uint8 kernel
            # reads (a view). np.array, not asarray: the array Pillow hands out is read-only, which torch warns about.
            rgb = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
            return self._torch_pixels(rgb, new_h, new_w, top, left)
        return self._box_pixels(image, new_h, new_w, top, left)

    def _placement(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Where an ``h × w`` image goes: its resized ``(height, width)`` (the shorter side to :attr:`size`) and the
        crop's ``(top, left)`` in it, as torchvision's resize and center_crop place them."""
        new_h, new_w = _compute_resized_output_size((h, w), [self.size])
        crop_h, crop_w = self.crop
        return new_h, new_w, round((new_h - crop_h) / 2.0), round((new_w - crop_w) / 2.0)

    def _torch_pixels(self, x: torch.Tensor, new_h: int, new_w: int, top: int, left: int) -> torch.Tensor:
        """:meth:`_crop_pixels` for ``(1, 3, H, W)`` ``uint8`` RGB pixels and a filter of :data:`_TORCH_FILTERS`:
        resized to ``(new_h, new_w)``, cropped from ``(top, left)``. Fastest channels-last (Pillow's arrays and the
        JPEG decoders' tensors are, as views)."""
        crop_h, crop_w = self.crop
        x = self._resized(x, new_h, new_w)
        return _channels_first(x[0, :, top : top + crop_h, left : left + crop_w].permute(1, 2, 0).numpy())

    def _resized(self, x: torch.Tensor, new_h: int, new_w: int) -> torch.Tensor:
        """``(1, 3, H, W)`` ``uint8`` pixels at ``(new_h, new_w)`` (themselves when they are that size already)."""
        if (new_h, new_w) == tuple(x.shape[-2:]):
            return x
        # one call: resizing the whole picture then cropping was faster than two single-axis passes with the columns
        # cropped in between (0.40 against 0.62 ms), the opposite of Pillow
        return torch.nn.functional.interpolate(_channels_last_view(x), size=(new_h, new_w),
                                               mode=_TORCH_FILTERS[self.resample], antialias=True)  # fmt: skip

    def _box_pixels(self, image: Image.Image, new_h: int, new_w: int, top: int, left: int) -> torch.Tensor:
        """:meth:`_crop_pixels` for other filters: the crop's pixels resampled by Pillow from the box of the source
        they come from."""
        w, h = image.size
        crop_h, crop_w = self.crop
        sx, sy = w / new_w, h / new_h
        y0, y1 = top * sy, (top + crop_h) * sy
        # Two single-pass resizes, widths then heights as in resize-then-crop, over the source rows the crop's rows
        # reach (3 filter radii of margin: the widest filter). One resize call with the whole box came out up to
        # 4 grey levels apart in 16% of pixels on portrait photos; two passes stay within 2 levels.
        margin = 3.0 * max(sy, 1.0) + 2.0
        first, last = max(0, int(np.floor(y0 - margin))), min(h, int(np.ceil(y1 + margin)))
        rows = image.crop((0, first, w, last)).resize(
            (crop_w, last - first), self.resample, box=(left * sx, 0, (left + crop_w) * sx, last - first)
        )
        pixels = np.asarray(rows.resize((crop_w, crop_h), self.resample, box=(0, y0 - first, crop_w, y1 - first)))
        return _channels_first(pixels)

    def __repr__(self) -> str:
        return f"CentreCropTransform(resize {self.size}, crop {self.crop}; stands in for {self.reference!r})"


_TORCH_FILTERS = {Image.Resampling.BILINEAR: "bilinear", Image.Resampling.BICUBIC: "bicubic"}
"""Pillow's filters that torch's antialiased ``uint8`` resize reproduces (the others have no torch kernel)."""


def _channels_first(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` pixels as a new contiguous ``(3, H, W)`` tensor, copied by numpy. Torch's own copy runs on its
    intra-op threads for a picture this size, and in a thread that prepares images (a scan's, concept extraction's)
    it made that thread start a team of OpenMP threads of its own (one more thread per preparing thread, counted in
    ``/proc``), which then competed with the model's pass for the cores: on 2 cores, concept extraction with a
    preparing thread per core ran 0.78× a bare pass, 0.90× with this copy. Numpy's copy is also the faster one on
    one thread (52 µs against 75 for 224×224)."""
    return torch.from_numpy(np.array(pixels.transpose(2, 0, 1), order="C"))  # always a copy: PIL's are read-only


def _channels_last_view(x: torch.Tensor) -> torch.Tensor:
    """``(1, 3, H, W)`` pixels laid out ``(H, W, 3)`` in memory (Pillow's arrays, the JPEG decoders' tensors) as a
    view whose strides say so to torch's resize. ``[None]`` on a ``(3, H, W)`` view gives the batch a stride of 3,
    and torch reads the layout from the strides (``suggest_memory_format``, which does not skip a dimension of size
    1): it took those pixels for ``NCHW`` and resized them in its generic kernel, 0.83 ms for a 500×375 photo on one
    core against 0.52 ms in the vectorised ``uint8`` kernel, for the same pixels. A view either way: nothing is
    copied."""
    return x[0].permute(1, 2, 0)[None].permute(0, 3, 1, 2) if x.shape[0] == 1 else x


def fast_eval_transform(reference: Any) -> Any:
    """The fast path for timm's centre-crop eval transform when ``reference`` is exactly one; else ``reference``."""
    steps = getattr(reference, "transforms", None)
    if not isinstance(steps, list) or [type(s).__name__ for s in steps] != [
        "Resize", "CenterCrop", "MaybeToTensor", "Normalize",
    ]:  # fmt: skip
        return reference
    resize, crop, _, norm = steps
    size = resize.size if isinstance(resize.size, int) else (resize.size[0] if len(resize.size) == 1 else None)
    if size is None or resize.max_size is not None or resize.interpolation not in pil_modes_mapping:
        return reference
    if pil_modes_mapping[resize.interpolation] == Image.Resampling.NEAREST:
        return reference  # PIL's nearest-neighbour resize takes another path, with no filter to line up
    crop_hw = (int(crop.size[0]), int(crop.size[1]))
    mean, std = [float(v) for v in norm.mean], [float(v) for v in norm.std]
    if len(mean) != 3 or len(std) != 3 or norm.inplace:
        return reference
    return CentreCropTransform(reference, int(size), crop_hw, pil_modes_mapping[resize.interpolation], mean, std)


def model_sized(transform: Any, image: LoadedImage) -> LoadedImage:
    """``image`` as small as ``transform`` (a model's, ``LoadedModel.transform``) lets it be held without changing
    what the model sees: its shorter side at the resize's size (:meth:`CentreCropTransform.resized`), its digest
    that of the smaller picture. For holding many images for one model (a Features spectrum of 1,000 photos of
    Open Images: 2.2 GB at full size, 0.25 GB so). ``image`` itself where the transform cannot promise equal pixels."""
    resized = getattr(transform, "resized", None)
    small = resized(image.image) if resized is not None else None
    if small is None:
        return image
    return replace(image, image=small, digest=image_digest(small))
