"""Imports every command module so that each registers on the app."""

from deepline.cli import config_cmd  # noqa: F401
from deepline.cli import run_cmds  # noqa: F401
from deepline.cli import demo_cmd  # noqa: F401
from deepline.cli import data_cmd  # noqa: F401
