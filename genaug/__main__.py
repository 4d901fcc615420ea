"""`python -m genaug ...` (used by `accelerate launch -m genaug`)."""

from genaug.cli import main

if __name__ == "__main__":
    main()
