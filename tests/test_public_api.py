"""The public API: every name in ``advlab.__all__`` resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys

import advlab


def test_every_public_name_resolves():
    for name in advlab.__all__:
        assert getattr(advlab, name) is not None, name


def test_import_and_cli_help_do_not_import_torch():
    import os
    from pathlib import Path

    code = "import sys, advlab.cli; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(advlab.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute"):
        advlab.definitely_not_there  # noqa: B018
