"""AppTest of the home page: the shared sidebar, predictions, and every kind of bad input a visitor can give."""

from __future__ import annotations

import pytest
import timm
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.corpus import bad_files, odd_files

TIMEOUT = 120


def home() -> AppTest:
    return AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def image_captions(at: AppTest) -> list[str]:
    return [c for im in at.main.get("image") for c in im.captions]


def assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_default_model_classifies_default_photo():
    at = home().run()
    assert_healthy(at)
    assert not at.error
    assert "**tiger cat**" in texts(at)
    assert at.sidebar.selectbox(key="model_select").value == "efficientnet_lite0"
    assert any("As efficientnet_lite0 sees it" in c for c in image_captions(at))


def test_picking_a_sample_updates_prediction_and_url():
    at = home().run()
    at.sidebar.button(key="sample_coffee").click().run()
    assert_healthy(at)
    assert "**espresso**" in texts(at)
    assert at.query_params["image"] in ("coffee", ["coffee"])


def test_a_shapes_sample_button_reads_short_and_its_help_names_it_as_links_do():
    at = home().run()
    star = at.sidebar.button(key="sample_shapes_star")
    assert star.label == "star" and "(in links and the CLI: shapes_star)" in star.help
    assert at.sidebar.button(key="sample_coffee").label == "coffee"
    star.click().run()
    assert at.query_params["image"] in ("shapes_star", ["shapes_star"])


def test_url_reproduces_a_choice():
    at = home()
    at.query_params["image"] = "camera"
    at.run()
    assert "**tripod**" in texts(at)


def test_every_bad_upload_gets_one_sentence_and_keeps_the_last_image():
    at = home().run()
    assert "**tiger cat**" in texts(at)
    for case, (name, data) in bad_files().items():
        at.sidebar.file_uploader(key="image_upload").set_value((name, data, "application/octet-stream")).run()
        assert_healthy(at)
        errors = [e.value for e in at.sidebar.error]
        assert len(errors) == 1, (case, errors)
        # a sentence: one line, starting with a capital or with the file's name as it was uploaded (never recased)
        assert "\n" not in errors[0] and (errors[0][0].isupper() or errors[0].startswith(name)), (case, errors)
        assert "**tiger cat**" in texts(at), case  # what was computed before is still shown


@pytest.mark.parametrize("case", ["cmyk_jpeg", "I16", "rgba", "animated_gif", "exif_rotated", "one_pixel"])
def test_odd_uploads_are_classified(case):
    name, data = odd_files()[case]
    at = home().run()
    at.sidebar.file_uploader(key="image_upload").set_value((name, data, "image/png")).run()
    assert_healthy(at)
    assert not at.error
    assert any(c.startswith(name) for c in image_captions(at)), case
    assert "**tiger cat**" not in texts(at)


def test_a_good_upload_after_a_bad_one_clears_the_error():
    at = home().run()
    uploader = at.sidebar.file_uploader(key="image_upload")
    uploader.set_value(("empty.jpg", b"", "image/jpeg")).run()
    assert len(at.sidebar.error) == 1
    name, data = odd_files()["webp"]
    at.sidebar.file_uploader(key="image_upload").set_value((name, data, "image/webp")).run()
    assert not at.sidebar.error


def test_unavailable_model_explains_itself_offline():
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("resnet50").run()
    assert_healthy(at)
    assert any("unavailable here" in c.value for c in at.sidebar.caption)
    message = at.main.error[0].value
    assert "cannot be reached" in message and "efficientnet_lite0" in message
    # Going back to the default model recovers without a restart.
    at.sidebar.selectbox(key="model_select").set_value("efficientnet_lite0").run()
    assert not at.error and "**tiger cat**" in texts(at)


def test_any_timm_name_with_suggestions():
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    at.sidebar.text_input(key="model_other").input("resnet5O").run()
    assert_healthy(at)
    assert "not a timm model name" in at.sidebar.error[0].value
    suggestion = at.sidebar.button(key="suggest_0")
    assert suggestion.label == "resnet50"
    suggestion.click().run()
    assert at.sidebar.text_input(key="model_other").value == "resnet50"


def test_a_part_of_a_name_offers_the_names_that_contain_it():
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    at.sidebar.text_input(key="model_other").input("vit_small").run()
    assert_healthy(at)
    assert not at.sidebar.error and "names that contain it" in at.sidebar.info[0].value
    labels = [at.sidebar.button(key=f"suggest_{i}").label for i in range(5)]
    assert labels[0] == "vit_small_patch16_224" and all("vit_small" in label for label in labels), labels
    at.sidebar.button(key="suggest_0").click().run()
    assert at.sidebar.text_input(key="model_other").value == "vit_small_patch16_224"
    assert not at.sidebar.info and any("M parameters" in c.value for c in at.sidebar.caption)
    # one of ours typed in the box (the offline ViT of shapes is not a timm name) is taken, not refused
    at.sidebar.text_input(key="model_other").input("shapes_vit").run()
    assert not at.sidebar.error and not at.sidebar.info and any("M parameters" in c.value for c in at.sidebar.caption)
    at.sidebar.text_input(key="model_other").input("qqqzzz").run()
    assert "nor a part of one" in at.sidebar.error[0].value
    at.sidebar.text_input(key="model_other").input("ResNet50").run()  # the case wrong: a misspelling, itself offered
    assert "Did you mean" in at.sidebar.error[0].value and at.sidebar.button(key="suggest_0").label == "resnet50"


def test_the_text_model_typed_as_an_image_model_points_to_the_text_page():
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    at.sidebar.text_input(key="model_other").input("text_bert").run()
    assert_healthy(at)
    assert not at.sidebar.error and "bundled text model" in at.sidebar.info[0].value
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("suggest_")]  # no timm names offered
    assert "**tiger cat**" not in texts(at)  # nothing classified with a text model
    at = home()
    at.query_params["model"] = "text_bert"
    at.run()
    assert_healthy(at)
    assert "bundled text model" in at.toast[0].value and "default model" in at.toast[0].value
    assert at.sidebar.selectbox(key="model_select").value == "efficientnet_lite0" and "**tiger cat**" in texts(at)


def test_a_link_with_a_mistyped_model_shows_the_default_and_suggests_the_name():
    at = home()
    at.query_params["model"] = "resnet_5O"
    at.run()
    assert_healthy(at)
    assert at.sidebar.selectbox(key="model_select").value == "efficientnet_lite0" and "**tiger cat**" in texts(at)
    assert "“resnet_5O” is not a timm model name (did you mean resnet50?)" in at.toast[0].value


def test_a_pasted_name_or_a_link_thousands_of_characters_long_is_named_in_a_short_sentence():
    """A model name of 5,000 characters pasted in the box came back whole in its sentence (5,076 characters), as did
    a link's model or image; the box takes at most 200 characters now, and what is longer than 80 is quoted to its
    60th character with its length."""
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    assert at.sidebar.text_input(key="model_other").proto.max_chars == 200
    at.sidebar.text_input(key="model_other").input("q" * 200).run()  # the most the box takes
    assert_healthy(at)
    error = at.sidebar.error[0].value
    assert error == f"“{'q' * 60}…” (200 characters) is not a timm model name, nor a part of one; try vit, resnet " \
                    "or convnext.", error[:300]  # fmt: skip
    at = home()
    at.query_params["model"] = "r" * 5000
    at.query_params["image"] = "s" * 3000
    at.run()
    assert_healthy(at)
    notes = " ".join(t.value for t in at.toast)
    assert f"The link's model “{'r' * 60}…” (5,000 characters) is not a timm model name" in notes, notes[:300]
    assert f"The link's image “{'s' * 60}…” (3,000 characters) is not one of the bundled samples" in notes, notes[:300]
    assert len(notes) < 600 and "**tiger cat**" in texts(at)  # the defaults, classified


def test_uploaded_weights_for_any_timm_model():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=4)
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    at = home().run()
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    at.sidebar.text_input(key="model_other").input("test_resnet").run()
    at.sidebar.file_uploader(key="classes_upload").set_value(("names.txt", b"apple\npear\nfig\nplum\n", "text/plain"))
    at.sidebar.file_uploader(key="weights_upload").set_value(("mine.safetensors", blob, "application/octet-stream"))
    at.run()
    assert_healthy(at)
    assert not at.main.error, [e.value for e in at.main.error]
    assert any(f"**{fruit}**" in texts(at) for fruit in ("apple", "pear", "fig", "plum"))
    assert any("file mine.safetensors" in c.value for c in at.caption)


def test_weights_that_do_not_fit_get_a_sentence():
    vit = timm.create_model("test_vit", pretrained=False)
    blob = save({k: v.contiguous() for k, v in vit.state_dict().items()})
    at = home().run()
    at.sidebar.file_uploader(key="weights_upload").set_value(("vit.safetensors", blob, "application/octet-stream"))
    at.run()
    assert_healthy(at)
    assert "does not fit timm's tf_efficientnet_lite0" in at.main.error[0].value
    assert any("Use the model's own weights" in c.value and "vit.safetensors" in c.value for c in at.main.caption)
    at.sidebar.button(key="weights_clear").click().run()
    assert not at.error and "**tiger cat**" in texts(at)


def _tiny_weights(classes: int) -> bytes:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=classes)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def _upload_test_resnet(at: AppTest, blob: bytes) -> AppTest:
    at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
    at.sidebar.text_input(key="model_other").input("test_resnet").run()
    at.sidebar.file_uploader(key="weights_upload").set_value(("mine.safetensors", blob, "application/octet-stream"))
    return at.run()


def test_a_model_too_large_for_the_memory_left_gets_a_sentence_and_kept_models_go_only_when_that_helps(monkeypatch):
    """On a server in a container, loading a model that does not fit would have the kernel kill the whole app."""
    from dashboard import resources
    from interp.models import budget as loading  # where loading checks the room left

    cleared = []
    real_clear = resources.cached_model.clear
    monkeypatch.setattr(resources.cached_model, "clear", lambda *a: cleared.append(1) or real_clear(*a))
    monkeypatch.setattr(loading, "room_mb", lambda: 0.0)
    monkeypatch.setattr(resources, "kept_mb", lambda: 1.0)  # letting the kept models go would not make room
    at = _upload_test_resnet(home().run(), _tiny_weights(4))
    assert_healthy(at)
    message = at.main.error[0].value
    assert "test_resnet" in message and "needs about" in message and "pick a smaller model" in message, message
    assert cleared == []  # other visitors' models stay

    dropped = []
    real_drop = resources.untrained.clear
    monkeypatch.setattr(resources.untrained, "clear", lambda *a: dropped.append(1) or real_drop(*a))
    rooms = iter([0.0])  # not enough at first; once the untrained copy is let go, the OS does not say: it loads
    monkeypatch.setattr(loading, "room_mb", lambda: next(rooms, None))
    monkeypatch.setattr(resources, "kept_mb", lambda: 10_000.0)
    at = _upload_test_resnet(home().run(), _tiny_weights(5))
    assert_healthy(at)
    assert not at.main.error, [e.value for e in at.main.error]
    assert (dropped, cleared) == ([1], [])  # the sanity checks' copy was enough: the models visitors use stay
    assert any("file mine.safetensors" in c.value for c in at.caption)

    rooms = iter([0.0, 0.0])  # still not enough without the untrained copy: every kept model goes, then it loads
    monkeypatch.setattr(loading, "room_mb", lambda: next(rooms, None))
    at = _upload_test_resnet(home().run(), _tiny_weights(6))
    assert_healthy(at)
    assert not at.main.error, [e.value for e in at.main.error]
    assert (dropped, cleared) == ([1, 1], [1])


def test_the_kept_models_weights_are_counted():
    from dashboard import resources
    from interp.models import parameter_count

    model = resources.cached_model("shapes_cnn", None, None, None, None)
    assert resources.kept_mb() >= parameter_count("shapes_cnn") * 4 / 2**20 > 0
    assert model in set(resources._KEPT)


@pytest.fixture
def server_env(monkeypatch):
    """Set the server's INTERP_* environment for one test: the settings and the result cache are read again."""
    from dashboard import resources

    def clear() -> None:
        resources.writable_settings.clear()
        resources.result_cache.clear()

    clear()
    yield monkeypatch.setenv
    monkeypatch.undo()
    clear()


def test_a_cache_folder_that_cannot_be_written_still_classifies_and_says_where_results_go(server_env, tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    server_env("INTERP_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    at = home().run()
    assert_healthy(at)
    assert not at.error, [e.value for e in at.error]
    assert "**tiger cat**" in texts(at)
    said = " ".join(c.value for c in at.main.caption)
    assert f"the cache folder {tmp_path / 'a-file' / 'cache'} cannot be written (Not a directory)" in said, said


@pytest.mark.parametrize(
    ("page", "variable", "value", "sentence"),
    [
        (None, "INTERP_SHARE_CONCEPTS", "maybe", "INTERP_SHARE_CONCEPTS='maybe' is neither 1 nor 0; set 0 to keep "
         "every visitor's concept sets to themselves."),
        ("pages/4_Concepts.py", "INTERP_SHARE_CONCEPTS", "maybe", "INTERP_SHARE_CONCEPTS='maybe' is neither 1 nor 0"),
        ("pages/1_Attribution.py", "INTERP_DEVICE", "gpu", "INTERP_DEVICE='gpu': device 'gpu' is not a torch device; "
         "use 'auto', 'cpu' or 'cuda'."),
        (None, "INTERP_CACHE_SIZE_MB", "1GB", "INTERP_CACHE_SIZE_MB='1GB' is not a whole number of megabytes"),
        ("pages/6_Text.py", "INTERP_OFFLINE", "maybe", "INTERP_OFFLINE='maybe' is neither 1 nor 0; set 1 never to "
         "contact the Hugging Face hub, 0 to try it."),
    ],
)  # fmt: skip
def test_a_bad_server_setting_is_one_sentence_on_every_page(server_env, page, variable, value, sentence):
    """Whoever runs the app reads what to set, on whichever page a visitor opens, not "something went wrong"."""
    server_env(variable, value)
    at = home()
    at = (at.switch_page(page) if page else at).run()
    assert_healthy(at)
    assert len(at.main.error) == 1 and at.main.error[0].value.startswith("This app cannot start as it is set up: ")
    assert sentence in at.main.error[0].value and at.main.error[0].value.endswith(" Then restart it.")


def test_a_model_whose_weights_come_from_the_hub_says_it_downloads_them(monkeypatch):
    """Online, a hub model not in the local cache is downloaded as it loads (a minute for a large one): the page says
    so while it runs and how big it is; a failed download is the engine's sentence, with no notice left behind."""
    from pathlib import Path

    from dashboard import resources, selection
    from interp.errors import WeightsUnavailableError
    from interp.models import describe, loading
    from interp.models import weights as W

    monkeypatch.setattr(W, "hub_reachable", lambda timeout=2.0: True)  # the machine's network, as if online
    resources.model_row.clear()
    try:
        assert selection.download_mb("resnet50") == round(describe("resnet50")["params"] * 4 / 2**20) > 90
        assert selection.download_mb("efficientnet_lite0") is None  # bundled
        assert selection.download_mb("no_such_model") is None  # the load says why

        def failing(arch):
            raise WeightsUnavailableError(f"downloading timm/{arch} from the hub failed; check the connection.")

        monkeypatch.setattr(loading, "_from_hub", failing)
        at = home().run()
        at.sidebar.selectbox(key="model_select").set_value("Another timm model…").run()
        at.sidebar.text_input(key="model_other").input("test_resnet").run()
        assert_healthy(at)
        assert [e.value for e in at.main.error] == ["Downloading timm/test_resnet from the hub failed; check the "
                                                     "connection."]  # fmt: skip
        assert not [i.value for i in at.main.info if "Downloading" in i.value]

        monkeypatch.setattr(W, "hub_cached_file", lambda arch: Path("/cached/model.safetensors"))
        assert selection.download_mb("resnet50") is None  # downloaded since: read from the local hub cache
    finally:
        resources.model_row.clear()


def test_home_does_not_load_captum_until_a_method_runs():
    """Captum imports matplotlib: together about 0.6 s of a cold start, which Home once paid through the method
    registry (``dashboard.charts`` → ``interp.attribution.display`` → the package, whose method modules imported
    Captum at the top). The registry still lists every method; Captum loads when one of them runs."""
    import ast
    import subprocess
    import sys

    from interp.attribution import METHODS

    tree = ast.parse((ROOT / "streamlit_app.py").read_text())
    imports = "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    code = f"""{imports}
import sys
import torch
import interp
from interp.attribution import METHODS, attribute
print(len(METHODS), "captum" in sys.modules, "matplotlib" in sys.modules)
attribute(interp.load_model("test_resnet", "random"), torch.rand(3, 32, 32), "saliency", target=0)
print("captum" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == [str(len(METHODS)), "False", "False", "True"], done.stdout


def test_the_model_picker_describes_only_the_chosen_model(monkeypatch):
    """A row's parameter count builds the model's skeleton (timm initialises its weights even on the meta device):
    describing every registered model took a visitor's first page 2.0 s. The list needs only availability; the card
    describes the chosen model."""
    from dashboard import resources

    described = []
    real = resources.describe
    monkeypatch.setattr(resources, "describe", lambda name: described.append(name) or real(name))
    resources.model_row.clear(), resources.model_choices.clear()
    try:
        at = home().run()
        assert_healthy(at)
        assert described == ["efficientnet_lite0"]
        assert "4.7 M parameters" in " ".join(c.value for c in at.sidebar.caption)
        options = at.sidebar.selectbox(key="model_select").options  # offline here: a hub model is marked
        assert options[:2] == ["efficientnet_lite0", "resnet50 (unavailable here)"] and "shapes_cnn" in options
    finally:
        resources.model_row.clear(), resources.model_choices.clear()
