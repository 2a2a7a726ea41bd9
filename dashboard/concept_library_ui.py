"""The Concepts page's concept library: the sets a visitor sees (their own and the server's shared ones), making a
new set from one of several sources, sharing and deleting."""

from __future__ import annotations

import functools
import secrets
import zipfile
from pathlib import Path

import streamlit as st

from dashboard import resources, state, views
from dashboard.feedback import attempt, guarded, sentence
from interp.concepts import (
    ConceptLibrary,
    ConceptSet,
    LibraryError,
    VisitorLibrary,
    generated,
)
from interp.concepts.library import STORED_SIDE, prune_visitors, slug, touch
from interp.datasets import zips
from interp.errors import InterpError
from interp.images import UPLOAD_EXTENSIONS, ImageOnDisk, LoadedImage, load_image
from interp.words import counted

SOURCES = (
    "Generated texture", "Shapes world concept", "Bundled photos", "Upload images or a zip", "A class of a dataset",
    "The failure gallery's selection",
)  # fmt: skip
DEMO_IMAGES = 24
MAX_UPLOAD_IMAGES = 300
UPLOAD_MB = 200
VISITOR_KEEP_S = 86_400  # a visitor's own sets are deleted a day after the last use of their session


def library() -> VisitorLibrary:
    """What this visitor sees: their own sets (a folder of theirs, which no other visitor reads) and the server's
    shared library. Their folder is named by a random token kept in the session."""
    visitors = resources.settings().cache_dir / "concept-visitors"
    token = st.session_state.get("_concept_owner")
    if token is None:
        token = st.session_state["_concept_owner"] = secrets.token_hex(12)
        prune_visitors(visitors, keep=visitors / token, max_age_s=VISITOR_KEEP_S)
    touch(visitors / token)
    return VisitorLibrary(ConceptLibrary(visitors / token), shared_library(),
                          frozenset(st.session_state.get("_concept_shared", ())))  # fmt: skip


@st.cache_resource(show_spinner=False)
def shared_library() -> ConceptLibrary:
    """The server's shared concept library under the cache folder, kept across restarts: the demo sets and the sets
    visitors chose to share."""
    lib = ConceptLibrary(resources.settings().cache_dir / "concepts")
    if not lib.sets():  # a first visit finds demo concepts ready, offline
        for kind in generated.TEXTURES:
            lib.save_set(kind, generated.texture_set(kind, DEMO_IMAGES), f"generated {kind} textures", replace=True)
        for kind in generated.SHAPES_CONCEPTS:
            lib.save_set(f"shapes {kind}", generated.shapes_concept(kind, DEMO_IMAGES),
                         f"the shapes world's {kind} concept", replace=True)  # fmt: skip
    return lib


def set_images(s: ConceptSet) -> list[ImageOnDisk]:
    """A saved set's images as files, each decoded when a pass needs it (:meth:`ConceptSet.images`); listed once per
    folder and content (a set saved again under its name is new) and kept for every session
    (:func:`dashboard.resources.held`): an older set without stored digests decodes its files once for them."""
    return resources.held(("concept set", str(s.folder), s.files), s.images)


# ------------------------------------------------------------------------------------------------------ library


def library_ui(lib: VisitorLibrary) -> None:
    """The saved sets with a few thumbnails each, whose they are, and a way to delete the visitor's own."""
    sets = lib.sets()
    msg = st.session_state.pop("_concept_msg", None)  # what a Delete or Share click did, said once
    # keyed: a label that counts the sets changes with a deletion, and would otherwise close the box on its message
    with st.expander(f"Concept library ({counted(len(sets), 'set')})", key="concept_library"):
        if msg:
            kind, text = msg
            (st.success if kind == "done" else st.error)(text)
        st.caption("Sets you save are yours alone: no other visitor sees them, and they last while this browser tab "
                   "keeps its session (reloading the page starts a new one). Shared sets are seen by every visitor "
                   "and can be named in links.")  # fmt: skip
        own = {s.name for s in lib.own.sets()}  # read once, not once per set and button
        for s in sets:
            c1, c2, c3 = st.columns([2, 6, 1])
            deletable = s.name in own or s.name in lib.shared_by_them
            whose = "yours" if s.name in own else "shared by you" if deletable else "shared"
            c1.markdown(f"**{s.name}**  \n{counted(len(s.files), 'image')} · {whose}"
                        + (f"  \n*{s.description}*" if s.description else ""))  # fmt: skip
            with c2:
                thumbs = _stored(s.folder, s.files[:8])
                if thumbs:
                    st.image(list(thumbs.values()), width=56)
            c3.download_button("Download", functools.partial(_set_zip, str(s.folder), s.files), f"{slug(s.name)}.zip",
                               "application/zip", key=f"concept_download_{s.name}", on_click="ignore",
                               help="Its images as a zip: upload it under *New concept set* on any server running "
                               "this app (your own sets last only as long as this session).")  # fmt: skip
            if deletable:
                c3.button("Delete", key=f"concept_delete_{s.name}", on_click=_delete, args=(s.name,))
            if s.name in own and resources.settings().share_concepts:
                c3.button("Share", key=f"concept_share_{s.name}", on_click=_share, args=(s.name,),
                          help="Every visitor of this server will see it, and a link can name it.")  # fmt: skip


def _stored(folder: Path | str, files: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each of a set's ``files`` still on disk (one deleted since the set was listed is left out: named
    by path, Streamlit's image element raised on it and the page showed a traceback)."""
    out = {}
    for f in files:
        try:
            out[f] = (Path(folder) / f).read_bytes()
        except OSError:
            continue
    return out


def _set_zip(folder: str, files: tuple[str, ...]) -> bytes:
    """A saved set's images as a zip (built when the button is clicked, not on every rerun); files gone from the disk
    are left out."""
    return views.zipped(_stored(folder, files))


@guarded("deleting the concept set")
def _delete(name: str) -> None:
    try:
        library().delete(name)
        st.session_state["_concept_shared"] = set(st.session_state.get("_concept_shared", ())) - {name}
        st.session_state["_concept_msg"] = ("done", f"Deleted the set {name!r} and its CAVs.")
    except LibraryError as exc:
        st.session_state["_concept_msg"] = ("failed", sentence(str(exc)))


@guarded("sharing the concept set")
def _share(name: str) -> None:
    try:
        shared = library().share(name)
        st.session_state["_concept_shared"] = {*st.session_state.get("_concept_shared", ()), shared.name}
        st.session_state["_concept_msg"] = ("done", f"Shared the set {name!r}: every visitor of this server sees it.")
    except LibraryError as exc:
        st.session_state["_concept_msg"] = ("failed", sentence(str(exc)))


def new_set_ui(lib: VisitorLibrary) -> None:
    """Build a concept set from one source and save it under a name: the visitor's own, or shared where the server
    allows it."""
    with st.expander("New concept set"):
        name = st.text_input("Name", key="concept_new_name", placeholder="e.g. striped", max_chars=60)
        source = st.radio("Images from", SOURCES, key="concept_new_source", horizontal=True)
        images, notes = _source_images_ui(source)
        if notes:
            st.caption(" ".join(notes))
        st.caption(f"{counted(len(images), 'image')} ready.")
        share = resources.settings().share_concepts and st.checkbox(
            "Share it with every visitor of this server", key="concept_new_share",
            help="A shared set is listed for everyone and a link can name it (a class opening a teacher's link needs "
            "that); only you, in this session, or whoever runs the server can delete it. Unshared, nobody else sees "
            "your images.",
        )  # fmt: skip
        # saved in the click's callback, before the page is drawn again: the library above lists the new set at once
        st.button("Save the set", key="concept_new_save", disabled=not images or not name.strip(), on_click=_save_new,
                  args=(name.strip(), images, bool(share)))  # fmt: skip
        if msg := st.session_state.pop("_concept_new_msg", None):
            kind, text = msg
            (st.success if kind == "done" else st.error)(text)


@guarded("saving the concept set")
def _save_new(name: str, images: list[LoadedImage], share: bool) -> None:
    try:
        saved = library().save_set(name, images, share=share)
    except LibraryError as exc:
        st.session_state["_concept_new_msg"] = ("failed", sentence(str(exc)))
        return
    if share:
        st.session_state["_concept_shared"] = {*st.session_state.get("_concept_shared", ()), saved.name}
    repeats = len(images) - len(saved.files)  # the same pixels twice are stored once
    said = f"Saved {saved.name!r} with {counted(len(saved.files), 'image')}"
    said += f" ({counted(repeats, 'repeated picture')} left out)" if repeats else ""
    said += ", shared with every visitor." if share else ", for you alone."
    st.session_state["_concept_new_msg"] = ("done", said)


def _source_images_ui(source: str) -> tuple[list[LoadedImage], list[str]]:
    if source == "Generated texture":
        kind = st.selectbox("Texture", generated.TEXTURES, key="concept_new_texture")
        n = st.slider("Images", 8, 100, 30, key="concept_new_n")
        return generated.texture_set(kind, n, seed=int(st.number_input("Seed", 0, 10_000, 0, key="concept_new_seed"))), []
    if source == "Shapes world concept":
        kind = st.selectbox("Concept", generated.SHAPES_CONCEPTS, key="concept_new_shapes")
        return generated.shapes_concept(kind, st.slider("Images", 8, 100, 30, key="concept_new_shapes_n")), []
    if source == "Bundled photos":
        import interp

        names = st.multiselect("Photos", list(interp.SAMPLES), key="concept_new_photos",
                               placeholder="Pick the bundled photos that show the concept")
        return [resources.sample_image(n) for n in names], []
    if source == "Upload images or a zip":
        files = st.file_uploader(f"Images, or a zip of images (up to {UPLOAD_MB} MB)",
                                 type=[*UPLOAD_EXTENSIONS, "zip"], accept_multiple_files=True, key="concept_new_files",
                                 max_upload_size=UPLOAD_MB)  # fmt: skip
        key = tuple((f.file_id, f.name, f.size) for f in files or [])
        return resources.held(("concept upload", key), lambda: read_uploads(files or []), "Reading the images…")
    if source == "The failure gallery's selection":
        return _gallery_selection()
    return _dataset_class_ui()


def _gallery_selection() -> tuple[list[LoadedImage], list[str]]:
    picked = state.get("_gallery_selection")
    if not picked:
        return [], ["Open the Failures page, scan a dataset and filter its gallery; the mistakes shown there can be "
                    "saved here as a concept set."]  # fmt: skip
    images, skipped = _dataset_set(picked["source"], tuple(picked["paths"]))
    notes = [f"From the gallery: {picked['what']} (up to 200)."]
    if skipped:
        notes.append(f"Skipped {counted(len(skipped), 'unreadable file')}.")
    return images, notes


def _dataset_set(root, paths: tuple[str, ...]) -> tuple[list[LoadedImage], list[str]]:
    """Images of a dataset at the size a set keeps, and the paths that could not be read. Read once, not on every
    rerun of the page (300 photos take seconds), and held under the app's budget for images."""

    def read() -> tuple[list[LoadedImage], list[str]]:
        ds, images, skipped = resources.dataset(root), [], []
        for path in paths:
            try:
                images.append(load_image(ds.path_of(path), name=path.rsplit("/", 1)[-1], max_side=STORED_SIDE))
            except InterpError:
                skipped.append(path)
        return images, skipped

    return resources.held(("concept source", root, paths), read, "Reading the images…")


def read_uploads(files) -> tuple[list[LoadedImage], list[str]]:
    """Decode uploaded images and the images inside uploaded zips, at most :data:`MAX_UPLOAD_IMAGES` of them and
    at the size a set is stored at; what cannot be read is skipped and named, and what is past the limit counted."""
    images, skipped, over = [], [], 0
    read = functools.partial(load_image, max_side=STORED_SIDE)
    for f in files:
        if len(images) >= MAX_UPLOAD_IMAGES and not f.name.lower().endswith(".zip"):
            over += 1
            continue
        data = f.getvalue()
        if f.name.lower().endswith(".zip"):
            try:
                archive = zips.open_zip(data, f.name)
            except InterpError:
                skipped.append(f.name)
                continue
            with archive:
                members, unsafe = zips.image_members(archive)
                skipped += unsafe
                for info in members:
                    if len(images) >= MAX_UPLOAD_IMAGES:
                        over += 1
                        continue
                    try:
                        images.append(read(zips.read_member(archive, info), name=info.filename))
                    except (InterpError, zips.MemberTooLarge, zipfile.BadZipFile, OSError, RuntimeError, EOFError):
                        skipped.append(info.filename)
            continue
        try:
            images.append(read(data, name=f.name))
        except InterpError:
            skipped.append(f.name)
    what = "that is not a readable image" if len(skipped) == 1 else "that are not readable images"
    notes = [f"Skipped {counted(len(skipped), 'file')} {what}: {', '.join(skipped[:5])}."] if skipped else []
    if over:
        notes.append(f"Kept the first {MAX_UPLOAD_IMAGES} images and left out {over} more: a set made here holds at "
                     f"most {MAX_UPLOAD_IMAGES}.")  # fmt: skip
    return images, notes


def _dataset_class_ui() -> tuple[list[LoadedImage], list[str]]:
    roots = attempt(resources.dataset_roots, "reading the dataset settings") or []
    if not roots:
        return [], ["No dataset is configured."]
    root = st.selectbox("Dataset", roots, format_func=lambda r: r.name, key="concept_new_dataset")
    ds = attempt(lambda: resources.dataset(root), f"reading {root.name}")
    if ds is None or not ds.class_names:
        return [], ["This dataset has no classes to pick from."]
    cls = st.selectbox("Class", ds.classes_present(), format_func=lambda i: ds.class_names[i], key="concept_new_class")
    n = st.slider("Images", 4, 100, 30, key="concept_new_class_n")
    images, skipped = _dataset_set(root, tuple(it.path for it in ds.items if cls in it.labels)[:n])
    return images, [f"Skipped {counted(len(skipped), 'unreadable file')}."] if skipped else []
