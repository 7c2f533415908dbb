"""Virtual kits: devices that behave like real boards, for ``labhub demo`` and the tests.

They sit on pseudo-terminals (``os.openpty``), so the hub opens and reads them with the
same code as a board on USB.
"""
