"""The demo and its sandbox, kept apart from the release library (which never imports them).

``homelab-release demo`` and the test fixtures use them; they ship in the same wheel, with the
example monorepo as package data, so that the demo runs from an installed package too.

- :mod:`homelab_release.demo.sandbox`: a private ``dockerd`` and an htpasswd registry on 127.0.0.1
- :mod:`homelab_release.demo.example`: the example monorepo laid out as git repositories
- :mod:`homelab_release.demo.box`: :class:`Sandbox`, the running parts and the repositories together
- :mod:`homelab_release.demo.steps`: the narrated steps of ``homelab-release demo``
"""

from homelab_release.demo.box import Sandbox, sandbox

__all__ = ["Sandbox", "sandbox"]
