"""The example scripts (examples/*.py) loaded as modules, for the tests that call their parse_args and main."""
import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name, tag="test"):
    """examples/<name>.py as a fresh module named '<name>_example_<tag>' (its flags, functions, main)."""
    spec = importlib.util.spec_from_file_location(f"{name}_example_{tag}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
