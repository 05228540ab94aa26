"""Imports every command module so that each registers on the app."""

from deepline.cli import (
    compress_cmd,  # noqa: F401
    config_cmd,  # noqa: F401
    data_cmd,  # noqa: F401
    demo_cmd,  # noqa: F401
    federate_cmd,  # noqa: F401
    lifecycle_cmd,  # noqa: F401
    play_cmd,  # noqa: F401
    runs_cmd,  # noqa: F401
    serve_cmd,  # noqa: F401
    trust_cmd,  # noqa: F401
    tune_cmd,  # noqa: F401
)
