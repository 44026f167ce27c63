"""One module per ``modseg`` subcommand (see modseg_ros/cli.py)."""
