"""``lanesad-train adapt``: adapt weights to a user's own camera from unlabelled drives.

Modules: ``sources`` (bags, videos, image folders), ``frames`` (hood and time order from the
frames alone), ``checks`` (camera facts from the teacher's lanes and the geometric checks a
pseudo-label must pass), ``criteria`` (unlabelled criteria and the
early-stopping score), ``student`` (teacher pass, label masks, loss), ``settings``
(every default and what it was measured against), ``run`` (the self-training loop, the weights
metadata and the command line), ``report`` (``--report DIR``).
The method is described in ``run``'s docstring and in docs/adapting.md.
"""
from lanesad_ros.training.adapt.run import AdaptError, adapt, main
from lanesad_ros.training.adapt.settings import AdaptSettings

__all__ = ["AdaptError", "AdaptSettings", "adapt", "main"]
