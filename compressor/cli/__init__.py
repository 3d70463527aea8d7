"""Command line: thin commands (commands.py) over library functions; support.py holds the shared plumbing.

`compressor.cli:main` is the console-script entry point; it imports the commands only when called.
"""


def main() -> None:
    from compressor.cli.commands import main as run

    run()
