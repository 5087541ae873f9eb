# pytest (prepend import mode, no tests/__init__.py) imports this folder as the package
# "serving", shadowing the real one; appending the real package's folder lets tests that
# import serving.* in-process still find it. Harmless once tests/ becomes a package.
import os as _os

__path__.append(_os.path.join(_os.path.dirname(_os.path.dirname(_os.path.dirname(
    _os.path.abspath(__file__)))), "serving"))
