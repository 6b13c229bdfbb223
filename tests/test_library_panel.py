"""The library panel and the Model menu, driven like a designer: add a folder, double-click entries."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from safetensors.torch import save_file

from studio.bench import checkpoint_files as F
from studio.engine import library
from studio.ui.settings import Settings


def _a1111_folder(root):
    models = root / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Lora").mkdir()
    unet, vae, texts = F.build_components("sd1", F.tiny_configs("sd1"), seed=3)
    F.save(F.ldm_state_dict("sd1", unet, vae, texts), models / "Stable-diffusion" / "dreamy.safetensors")
    save_file(F.kohya_lora("sd1", unet, texts), str(models / "Lora" / "inkwash.safetensors"),
              metadata={"ss_tag_frequency": json.dumps({"set": {"ink": 4}})})
    return models


def _double_click(qtbot, tree, row):
    """Press, release, then the double-click event, as a real double-click arrives."""
    where = tree.visualItemRect(row).center()
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)


def _row(panel, name):
    tree = panel.tree
    return next(tree.topLevelItem(k) for k in range(tree.topLevelItemCount()) if tree.topLevelItem(k).text(0) == name)


def test_library_panel_adds_a_folder_lists_it_and_double_clicks_do_what_they_say(qtbot, tmp_path, data_dir):
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    models = _a1111_folder(tmp_path / "stable-diffusion-webui")
    backend = Backend(data_dir, device="cpu")
    window = MainWindow(backend, Settings(data_dir / "settings.ini"), Gallery(data_dir))
    qtbot.addWidget(window)
    window.show()
    panel = window.library_panel
    window.library_dock.raise_()  # it starts as a tab behind the gallery
    with qtbot.waitSignal(panel.changed, timeout=60_000):
        panel.add_folder(models)
    assert library.folders(data_dir)[1] == models.resolve()
    assert {panel.tree.topLevelItem(k).text(0) for k in range(panel.tree.topLevelItemCount())} == {"dreamy", "inkwash"}
    assert _row(panel, "dreamy").text(2) == "SD 1.x"
    panel.search.setText("ink")  # matches the LoRA's name and its training tag
    assert panel.tree.topLevelItemCount() == 1
    panel.search.clear()
    lora = _row(panel, "inkwash")
    panel.tree.setCurrentItem(lora)
    assert "Trained with: ink" in panel.details.text()
    window.controls.prompt.setPlainText("a red circle")
    _double_click(qtbot, panel.tree, lora)
    assert window.controls.prompt.toPlainText() == "a red circle, <lora:inkwash:1>"
    window.models.fill_menu()
    names = [a.text() for a in window.models.menu.actions()]
    assert "dreamy  (SD 1.x)" in names and any(n.startswith("studio-shapes") for n in names)
    loads = []
    backend.load_model = lambda model, memory=None: loads.append((model, memory))  # no real load needed here
    dreamy = _row(panel, "dreamy")
    _double_click(qtbot, panel.tree, dreamy)
    assert loads == [(str(models / "Stable-diffusion" / "dreamy.safetensors"), "auto")]
    memory = next(a.menu() for a in window.models.menu.actions() if a.text() == "Memory")
    low = next(a for a in memory.actions() if a.text().startswith("Low"))
    window.models.info = {"ref": "builtin"}
    low.trigger()
    assert window.settings.get("memory") == "low" and loads[-1] == ("builtin", "low")
    qtbot.waitUntil(lambda: all(i.hash for i in panel.items if i.kind is not library.ItemKind.DIFFUSERS),
                    timeout=60_000)  # hashed in the background, then cached
    window.models.info = {}
    window.close()


def test_closed_docks_come_back_from_the_view_menu(qtbot, data_dir):
    from studio.gallery import Gallery
    from studio.ui.main_window import MainWindow
    from studio.ui.worker import Backend

    window = MainWindow(Backend(data_dir, device="cpu"), Settings(data_dir / "settings.ini"), Gallery(data_dir))
    qtbot.addWidget(window)
    window.show()
    window.gallery_dock.close()
    assert not window.gallery_dock.isVisible()
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    next(a for a in view.actions() if a.text() == "Gallery").trigger()
    assert window.gallery_dock.isVisible()
    window.close()
