"""The built-in configs: `catdog -c NAME` reads NAME.yaml from this folder (see catdog.config)."""
