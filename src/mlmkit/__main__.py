"""Allow ``python -m mlmkit`` and ``accelerate launch -m mlmkit``."""

from mlmkit.cli.app import main

if __name__ == "__main__":
    main()
