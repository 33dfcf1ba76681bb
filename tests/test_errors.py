"""One base for the errors a user can act on: every public exception class of models/, builder/
and desktop/ derives from models.errors.CoderError (Cancelled, which is not an error, excepted)."""
import importlib
import pkgutil

from models.errors import CoderError
from models.runtimes import Cancelled, RuntimeUnavailable

NOT_ERRORS = {Cancelled}


def _exception_classes() -> list[type]:
    found = []
    for layer in ("models", "builder", "desktop"):
        package = importlib.import_module(layer)
        for info in pkgutil.walk_packages(package.__path__, f"{layer}."):
            if ".corpora" in info.name:
                continue
            module = importlib.import_module(info.name)
            found += [v for v in vars(module).values()
                      if isinstance(v, type) and issubclass(v, BaseException)
                      and v.__module__ == module.__name__ and not v.__name__.startswith("_")]
    return found


def test_every_public_exception_is_a_coder_error():
    classes = _exception_classes()
    assert RuntimeUnavailable in classes and len(classes) > 10
    stray = [f"{c.__module__}.{c.__name__}" for c in classes
             if c not in NOT_ERRORS and not issubclass(c, CoderError)]
    assert not stray, f"derive these from models.errors.CoderError: {stray}"
    assert not issubclass(Cancelled, CoderError)


def test_coder_errors_keep_their_old_bases():
    from builder.config import ConfigError
    from models.net import RemoteNotAllowed
    from models.notes import NoteError

    assert issubclass(NoteError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(RuntimeUnavailable, RuntimeError) and issubclass(RemoteNotAllowed, PermissionError)
