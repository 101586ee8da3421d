"""The networks: a subnet's static network (``static``) and the weight-sharing supernet
(``supernet``); BN recalibration and accuracy (``evaluate``)."""

from anas.nn.static import StaticNet
from anas.nn.supernet import Supernet, crop

__all__ = ["StaticNet", "Supernet", "crop"]
