"""The Servers dialog: add servers by typing and clicking, see a status light each, save where jobs run."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from studio.backends import settings as server_settings
from studio.backends.base import BackendKind
from studio.ui.servers_dialog import STATUS_ROLE, ServersDialog
from tests.fake_comfy import FakeComfy


def test_added_servers_show_their_status_and_save_as_the_default(qtbot, data_dir):
    fake = FakeComfy("good")
    try:
        dialog = ServersDialog(data_dir)
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitExposed(dialog)
        for url in (fake.url, "127.0.0.1:9"):
            dialog.url.setText(url)
            qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        statuses = lambda: [dialog.list.item(k).data(STATUS_ROLE) for k in range(dialog.list.count())]  # noqa: E731
        qtbot.waitUntil(lambda: all(s is not None for s in statuses()), timeout=10000)
        up, down = statuses()
        assert up.up and "ComfyUI fake" in up.text and "1 checkpoint" in up.text
        assert not down.up and "cannot reach" in dialog.list.item(1).toolTip()
        assert dialog.checkpoint.currentText() == "model.safetensors"  # what the servers have, to choose from
        dialog.url.setText("ftp://nowhere")
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        assert "not a server address" in dialog.message.text() and dialog.list.count() == 2
        qtbot.mouseClick(dialog.remote, Qt.MouseButton.LeftButton)
        dialog.save()
        saved = server_settings.load(data_dir)
        assert saved.urls() == [fake.url, "http://127.0.0.1:9"]
        assert saved.default is BackendKind.COMFYUI and saved.model == "model.safetensors"
        assert "token" not in json.loads((data_dir / server_settings.SERVERS_FILE).read_text())["servers"][0]
    finally:
        fake.close()
