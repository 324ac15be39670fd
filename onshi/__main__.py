"""``python -m onshi``: the same as the ``onshi`` console script."""

from onshi.cli import main

if __name__ == "__main__":
    main()
