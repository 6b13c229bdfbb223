#!/usr/bin/env bash
# Build the PyInstaller one-folder bundle (packaging/studio.spec) and smoke-run it: `studio --version`
# and one picture from the built-in model with the bundle's own `studio generate`. Not run by CI (it
# takes minutes and bundles whatever torch is installed). Run from anywhere, in Studio's environment:
#     packaging/build_bundle.sh            # prints the size and the result at the end
set -euo pipefail
cd "$(dirname "$0")/.."

python -m PyInstaller --version >/dev/null 2>&1 || python -m pip install "pyinstaller>=6"
start=$(date +%s)
python -m PyInstaller --noconfirm --log-level WARN packaging/studio.spec
built=$(( $(date +%s) - start ))

bundle=dist/studio/studio
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
version=$("$bundle" --version)
# A fresh data folder and no display: the frozen CLI must find the built-in model inside the bundle.
env -u DISPLAY -u WAYLAND_DISPLAY STUDIO_HOME="$smoke/home" \
    "$bundle" generate --prompt "a red circle on a blue background" --steps 8 --seed 1 --device cpu \
    --out "$smoke/picture.png" --no-gallery --json > "$smoke/record.json"
python - "$smoke/picture.png" "$smoke/record.json" <<'PY'
import json, sys
from PIL import Image
from studio.recipe.metadata import read_recipe
with Image.open(sys.argv[1]) as image:
    image.load()
    size = image.size
record = json.loads(open(sys.argv[2]).read())
recipe = read_recipe(sys.argv[1])
assert recipe and recipe["model"]["name"] == "studio-shapes", recipe
print(f"picture: {size[0]}x{size[1]}, model {record['model']}, seed {record['seed']}, {record['seconds']} s")
PY
echo "version: $version"
echo "build: ${built} s"
echo "bundle size: $(du -sh dist/studio | cut -f1) ($(du -sb dist/studio | cut -f1) bytes, $(find dist/studio -type f | wc -l) files)"
