"""`python -m kubectl_svcnet` runs the plugin."""

from kubectl_svcnet.cli import main

if __name__ == "__main__":
    main()
