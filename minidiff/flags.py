"""Command-line flag types: argparse `type=` functions that check a value when it is parsed.

    p.add_argument("--batch-size", type=integer(1), default=32)
    -> python examples/mnist.py --batch-size 0
       mnist.py: error: argument --batch-size: expected an integer >= 1, got '0'

Each factory returns a function that turns the flag's text into a value or raises
argparse.ArgumentTypeError saying what was expected and what was given; argparse adds the
flag's name and exits with its usage message before the program does any work. Used by
examples/mnist.py, examples/spiral.py, `python -m minidiff.judge` and `python -m minidiff.bench`.
"""
import argparse
import math
import os


def _bounds(low, high, low_open, high_open):
    """'>= 1', '> 0', 'in [0, 1)' ... for the message."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def _inside(v, low, high, low_open, high_open):
    return ((low is None or (v > low if low_open else v >= low))
            and (high is None or (v < high if high_open else v <= high)))


def integer(low=None, high=None, even=False):
    """A flag type: an integer in [low, high] (None: unbounded), even if asked."""
    what = f"an {'even ' if even else ''}integer {_bounds(low, high, False, False)}".rstrip()

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not _inside(v, low, high, False, False) or (even and v % 2):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


def real(low=None, high=None, low_open=False, high_open=False):
    """A flag type: a finite number within the bounds (open or closed at each end)."""
    bounds = _bounds(low, high, low_open, high_open)
    what = f"a number {bounds}" if low is not None and high is not None else f"a finite number {bounds}".rstrip()

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or not _inside(v, low, high, low_open, high_open):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


def integer_list(low=1, example="1,2,3"):
    """A flag type: comma-separated integers >= low, as a tuple."""
    what = f"comma-separated integers >= {low} (e.g. {example})"

    def parse(text):
        try:
            values = tuple(int(v) for v in str(text).split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if any(v < low for v in values):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values
    return parse


def name_list(text):
    """A flag type: comma-separated names (at least one), as a list."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated case names, got {text!r}")
    return names


def existing_dir(text):
    """A flag type: a directory that exists."""
    path = os.path.expanduser(text)
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"expected an existing directory, got {text!r}")
    return text


def _writable_parent(path):
    """Whether `path` can be made: its nearest existing ancestor is a writable directory."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)


def output_dir(text):
    """A flag type: a directory to write into (it exists, or can be made)."""
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"expected a directory to write into, got the file {text!r}")
    if not (os.access(path, os.W_OK | os.X_OK) if os.path.isdir(path) else _writable_parent(path)):
        raise argparse.ArgumentTypeError(f"expected a directory to write into, got {text!r} (not writable)")
    return text


def output_file(what="a file path"):
    """A flag type: a file to write (not a directory; in a writable directory, made if missing)."""
    def parse(text):
        path = os.path.expanduser(text)
        if os.path.isdir(path):
            raise argparse.ArgumentTypeError(f"expected {what}, got the directory {text!r}")
        if not _writable_parent(path):
            raise argparse.ArgumentTypeError(f"expected a path in a writable directory, got {text!r}")
        return text
    return parse
