"""Ways to reach a card, all behind one :class:`Transport` contract (see ``base``).

``inproc`` calls the card engine directly; ``vpcd`` serves a card to pcscd's virtual reader;
``pcscd`` runs a private pcscd in its own namespaces; ``pcsc`` is the host side through pyscard;
``check`` is the contract test every transport passes. Importing this package starts nothing.
"""

from onshi.transport.base import CardLike, CardRemovedError, Transport, TransportError
from onshi.transport.check import TransportCheckError, check_transport
from onshi.transport.inproc import InProcessTransport
from onshi.transport.pcsc import PcscTransport, list_readers, match_reader
from onshi.transport.pcscd import PrivatePcscd, default_state_path, find_private_pcscd
from onshi.transport.vpcd import VPCD_PORT, Control, VpcdCard

__all__ = [
    "VPCD_PORT",
    "CardLike",
    "CardRemovedError",
    "Control",
    "InProcessTransport",
    "PcscTransport",
    "PrivatePcscd",
    "Transport",
    "TransportCheckError",
    "TransportError",
    "VpcdCard",
    "check_transport",
    "default_state_path",
    "find_private_pcscd",
    "list_readers",
    "match_reader",
]
