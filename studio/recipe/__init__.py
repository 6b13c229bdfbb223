"""The recipe: the request (every field's default, range and name defined once), its stored form, the
metadata other tools read and write, and the errors every layer raises. Pure Python + Pillow, no torch,
no Qt: the engine, the gallery, the backends, the CLI and the window all build on it."""
