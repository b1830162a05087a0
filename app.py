"""The Hugging Face Space's entry point (README's front matter names it): the face studio, demo/app.py."""
import sys

from demo.app import main

if __name__ == "__main__":
    sys.exit(main())
