"""Runs Debian's svcrack from a chosen source address.

sipvicious 0.3 parses `-b/--bindingip` but never hands it to its cracker, which then always binds to
every address; on one machine its packets would all come from 127.0.0.1. This passes the address the
way the option means to and runs the unmodified tool.

Usage: python3 svcrack_bound.py BIND_IP [svcrack arguments...]
"""
import sys

sys.path.insert(0, "/usr/share/sipvicious")
from sipvicious import svcrack  # noqa: E402

bind = sys.argv[1]
original = svcrack.ASipOfRedWine.__init__


def bound(self, *args, **kwargs):
    kwargs["bindingip"] = bind
    original(self, *args, **kwargs)


svcrack.ASipOfRedWine.__init__ = bound
sys.argv = ["svcrack"] + sys.argv[2:]
svcrack.main()
