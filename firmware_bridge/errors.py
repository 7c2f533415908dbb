"""The errors of the hardware side that its callers (the API, MQTT commands, the CLI) tell
apart, so each becomes the right answer: a 404 for a device the hub never met, a 409 for
one that cannot take a command now, a 409 with ``Retry-After`` for one being (re)opened.

    RegistryError                the registry refused: settings not valid, an empty name
    └── NoSuchDeviceError        no device with that id was ever seen (also a LookupError)
    DeviceUnavailableError       the device is known but cannot take a command now: not
    │                            connected, runs a sketch, or this hub reads no ports
    └── DeviceReopeningError     it is being opened, reopened or identified and did not
                                 become ready within the command's wait; ``retry_after_s``
                                 says when to try again

A command the device's settings do not allow is ``actuators.CommandError``; a Firmata
board's own failure is ``firmata.FirmataError``.
"""

from __future__ import annotations


class RegistryError(Exception):
    """A device that is not registered, or settings that are not valid."""


class NoSuchDeviceError(RegistryError, LookupError):
    """No device with this id was ever seen by this hub."""


class DeviceUnavailableError(Exception):
    """The device is known but cannot take a command now; the message says why."""


class DeviceReopeningError(DeviceUnavailableError):
    """The device is being (re)opened or identified; try again after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
