# For static analysers only (Pyright, the engine of VS Code's Python support); Python never
# imports a .pyi. At runtime `tasks` is the root tasks.py, whose __path__ makes this folder its
# package: Pyright ignores that __path__, and this stub makes tasks/ a regular package for it.
# Keep in step with tasks.py's public names. mypy skips this file (tool.mypy.exclude).
from invoke.collection import Collection

ns: Collection
