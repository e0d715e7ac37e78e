"""Package seams that cost nothing until used (PEP 562).

A package's `__init__` names what it re-exports and the module each name lives in;
a name's module is imported when the name is first looked up. So
`import gateway.config.reader` loads the reader alone, not the rest of the
package, and no package imports a submodule it does not need.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`, exporting `homes` (module -> names).

    Each name is imported from its module on first lookup, then kept in the
    package. Other names raise AttributeError, so `from package import sub`
    still imports a submodule.
    """
    home_of = {name: module for module, names in homes.items() for name in names}

    def attribute(name: str) -> Any:
        module = home_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
