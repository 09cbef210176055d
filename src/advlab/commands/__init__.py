"""CLI commands, one module each.

Every module defines ``register(app, list_app)`` that adds its commands to the ``advlab``
Typer app (and, if it has something to list, a command to ``advlab list``).  Modules must not
import torch at import time; do it inside the command functions.
"""
