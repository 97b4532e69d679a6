"""Userspace link emulator for tests: delay, jitter and loss without netem.

See README.md in this directory.  The emulator itself is the standalone
program ``python -m testsupport.linkemu.emulator``; this package adds the
namespace plumbing and the ``impaired_link()`` context manager.
"""

from .netns import (
    ImpairedLink,
    LinkAddresses,
    LinkError,
    impaired_link,
    list_namespaces,
    missing_netns_prerequisites,
    remove_stale_namespaces,
    require_root_netns,
)

__all__ = [
    "ImpairedLink",
    "LinkAddresses",
    "LinkError",
    "impaired_link",
    "list_namespaces",
    "missing_netns_prerequisites",
    "remove_stale_namespaces",
    "require_root_netns",
]
